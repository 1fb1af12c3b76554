/** Schemas of the short history the daemon keeps of each instance (src/services/history.ts). */
import { Type, type Static } from '@sinclair/typebox';
import { nullable } from './schemas-common.js';

export const HistoryQuery = Type.Object({
  since: Type.Optional(Type.Integer({ minimum: 0, description: 'only the samples taken after this time (ms since the epoch): a page that has the rest asks for what is new' })),
}, { additionalProperties: false });

const column = (description: string) => Type.Array(nullable(Type.Number()), { description });

export const HistorySeries = Type.Object({
  t: Type.Array(Type.Number(), { description: 'when each sample was taken, ms since the epoch, oldest first' }),
  vcpuSeconds: column('host CPU seconds of the vCPU threads (user + system), summed'),
  vcpus: column('vCPU threads measured'),
  cpuPercent: column('the vCPU threads\' CPU time over the step, in percent of the instance\'s vCPUs (100: all busy)'),
  residentBytes: column('Rss of the QEMU process (smaps_rollup)'),
  guestResidentBytes: column('host memory resident for guest RAM alone: the Rss of the mappings of the QEMU process (smaps) that back its RAM blocks'),
  configuredBytes: column('the boot memory configured'),
  balloonBytes: column('memory the balloon leaves the guest (query-balloon actual); null without a balloon'),
  diskReadBytes: column('bytes read over all disks (query-blockstats)'),
  diskWriteBytes: column('bytes written over all disks'),
  diskReadRate: column('bytes read per second over the step'),
  diskWriteRate: column('bytes written per second over the step'),
  nicRxBytes: column('bytes the guest received over all NICs with counters (a tap\'s; user-mode networking: the guest agent\'s; null: none)'),
  nicTxBytes: column('bytes the guest sent over all NICs with counters'),
  nicRxRate: column('bytes received per second over the step (null across a counter that went back, or a change in the NICs measured)'),
  nicTxRate: column('bytes sent per second over the step'),
  nics: column('NICs whose counters the NIC columns sum'),
});

export const InstanceHistory = Type.Object(
  {
    name: Type.String(),
    stepMs: Type.Integer({ description: 'the time between samples' }),
    capacity: Type.Integer({ description: 'samples kept (the oldest go first)' }),
    series: HistorySeries,
    nicSources: Type.Array(Type.Union([Type.Literal('tap'), Type.Literal('guest-agent')]), { description: 'where the latest NIC counters came from: the host\'s taps, or the guest agent (figures the guest reports)' }),
  },
  { title: 'InstanceHistory' },
);
export type InstanceHistory = Static<typeof InstanceHistory>;

export const HistorySummary = Type.Object(
  {
    stepMs: Type.Integer(),
    capacity: Type.Integer(),
    passMs: nullable(Type.Number(), 'how long the last pass over every instance took'),
    instances: Type.Array(Type.Object({
      name: Type.String(),
      t: Type.Number(),
      configuredBytes: Type.Integer(),
      residentBytes: nullable(Type.Integer(), 'Rss of the QEMU process, its own memory included'),
      guestResidentBytes: nullable(Type.Integer(), 'host memory resident for guest RAM alone'),
      balloonBytes: nullable(Type.Integer()),
    }), { description: 'the latest memory figures of each running instance' }),
    reclaimed: Type.Object({
      configured: Type.Integer({ description: 'memory configured for the running instances' }),
      guestResident: Type.Integer({ description: 'host memory resident for their guest RAM, summed (QEMU\'s own memory left out)' }),
      notResident: Type.Integer({ description: 'the memory reclaimed: configured less guest RAM resident, per instance (never below 0), summed: guest RAM never touched, given back by free page reporting, or held by a balloon' }),
      balloon: Type.Integer({ description: 'configured less the balloon\'s size, summed: what the balloons hold, a part of notResident (not to be added to it)' }),
    }),
  },
  { title: 'HistorySummary' },
);
export type HistorySummary = Static<typeof HistorySummary>;
