/** What an agent's services give its cluster link (agent-link.ts): reports (with each instance's summary), the HA instances, fencing, forgetting, what live migrations left. */
import { ACTIVE_STATES } from '../core/state.js';
import type { EventBus } from '../services/events.js';
import type { InstanceService } from '../services/instances.js';
import { instanceSummary } from '../services/instance-view.js';
import type { Store } from '../store/store.js';
import type { LinkHooks } from './agent-link.js';
import type { CpuReport } from '../core/cpu-models.js';
import type { MemoryReport } from '../core/migration-checks.js';
import type { MigrationRecoveryService } from '../services/migration-recovery.js';

export function agentLinkHooks(d: {
  instances: InstanceService;
  store: Store;
  events: EventBus;
  /** the id of this agent's first event since it started (the cluster's events begin there for a new host) */
  firstEventId: number;
  version: string;
  sharedPool: string | null;
  /** the host's CPU and memory reports (services/host-report.ts); none: not sent */
  reporter?: { cpu(): CpuReport | null; memory(): MemoryReport };
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  /** what live migrations left here (services/migration-recovery.ts); none: not reported */
  migrations?: Pick<MigrationRecoveryService, 'leftovers' | 'abandon'>;
}): LinkHooks {
  const ha = () => d.store.listInstances().filter((r) => r.spec.ha === true);
  return {
    report: async () => {
      const p = d.instances.pool();
      const rows = d.store.listInstances();
      const migrations = d.migrations ? await d.migrations.leftovers() : [];
      return {
        capacity: p.capacity, allocation: p.allocated, agentVersion: d.version, sharedPool: d.sharedPool,
        ha: rows.filter((r) => r.spec.ha === true).map((r) => r.name), instances: rows.map(instanceSummary),
        ...(d.reporter ? { cpuReport: d.reporter.cpu(), memoryReport: d.reporter.memory() } : {}),
        ...(migrations.length > 0 ? { migrations } : {}),
      };
    },
    ...(d.migrations ? { abandon: (names: string[], sentAt: number) => d.migrations!.abandon(names, sentAt) } : {}),
    events: { since: (id, limit) => d.events.since(id, limit), firstId: d.firstEventId },
    haPids: () => ha().filter((r) => r.pid !== null).map((r) => ({ pid: r.pid!, startTicks: r.pidStart })),
    fence: async (reason) => {
      const killed: string[] = [];
      for (const r of d.store.listInstances(ACTIVE_STATES).filter((x) => x.spec.ha === true)) {
        try {
          await d.instances.kill(r.name);
          killed.push(r.name);
          d.events.publish('instance.fenced', r.name, { reason });
        } catch (e) {
          d.log.warn({ instance: r.name, error: (e as Error).message }, 'could not kill an HA instance while fencing');
        }
      }
      return killed;
    },
    restart: async (names) => {
      for (const name of names) {
        try {
          await d.instances.start(name);
          d.events.publish('instance.unfenced', name, { reason: 'the lease is renewed; the cluster moved it nowhere' });
        } catch (e) {
          d.log.warn({ instance: name, error: (e as Error).message }, 'could not start again an HA instance after its lease came back');
        }
      }
    },
    forget: async (names) => {
      for (const name of names) {
        try {
          await d.instances.delete(name, true, true);
          d.events.publish('instance.moved-away', name, { reason: 'the cluster runs it on another host' });
        } catch (e) {
          d.log.warn({ instance: name, error: (e as Error).message }, 'could not forget an instance the cluster moved');
        }
      }
    },
  };
}
