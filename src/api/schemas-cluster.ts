/** Schemas of a cluster controller's API: hosts, join tokens, an agent's join and heartbeat. */
import { Type, type Static } from '@sinclair/typebox';
import { literals } from '../core/spec-schema.js';
import { Dict, nullable } from './schemas-common.js';
import { Instance } from './schemas-instances.js';

export const HOST_STATES = ['up', 'maintenance', 'unreachable', 'fenced'] as const;

/** core/cpu-models.ts CpuReport */
export const CpuReport = Type.Object({
  accel: literals(['kvm', 'tcg'] as const),
  qemuVersion: Type.String({ maxLength: 100 }),
  models: Type.Array(Type.String({ maxLength: 100 }), { maxItems: 1000, description: 'the named CPU models this host\'s QEMU runs under its accelerator (query-cpu-definitions, no unavailable feature)' }),
  hostCpu: Type.Object({
    vendor: Type.String({ maxLength: 100 }), model: Type.String({ maxLength: 200 }), flags: Type.Array(Type.String({ maxLength: 100 }), { maxItems: 2000 }),
  }, { additionalProperties: false, description: 'the host\'s own CPU (/proc/cpuinfo), which -cpu host passes through' }),
}, { additionalProperties: false, title: 'CpuReport' });

/** core/migration-checks.ts MemoryReport */
export const MemoryReport = Type.Object({
  available: Type.Number({ description: 'MemAvailable, bytes' }),
  hugepages: Type.Array(Type.Object({ size: Type.Number(), total: Type.Number(), free: Type.Number() }, { additionalProperties: false }), { maxItems: 16 }),
}, { additionalProperties: false, title: 'MemoryReport' });

export const ClusterHost = Type.Object(
  {
    name: Type.String(),
    uuid: Type.String(),
    state: literals(HOST_STATES),
    address: Type.String({ description: 'the agent\'s API (https://IP:PORT), or empty when it serves none' }),
    labels: Type.Record(Type.String(), Type.String(), { description: 'the host\'s labels (corral host label; corral agent --label at its join), which creates may ask for (hostLabels)' }),
    maintenance: Type.Boolean(),
    sharedPool: nullable(Type.String({ description: 'where the host mounts the cluster\'s shared storage; null: none' })),
    fencedAt: nullable(Type.String()),
    fenceReason: nullable(Type.String()),
    capacity: Type.Unknown({ description: 'the host\'s pool capacity as its agent last reported it (GET /v1/pool on the agent)' }),
    allocation: Type.Unknown({ description: 'what its instances hold of it, as last reported' }),
    agentVersion: nullable(Type.String()),
    joinedAt: Type.String(),
    lastHeartbeat: nullable(Type.String()),
    heartbeatAgeMs: nullable(Type.Number({ description: 'how long ago, on the database\'s clock' })),
    cpuReport: nullable(CpuReport, 'what the host\'s QEMU can run, as its agent last reported; null: not yet'),
    memoryReport: nullable(MemoryReport, 'its available memory and hugepages, as of its last heartbeat'),
  },
  { title: 'ClusterHost' },
);
export type ClusterHost = Static<typeof ClusterHost>;

export const HostList = Type.Object({ hosts: Type.Array(ClusterHost) });

export const MaintenanceBody = Type.Object({ on: Type.Boolean() }, { additionalProperties: false });

export const HostLabelsBody = Type.Object(
  { labels: Dict(nullable(Type.String()), 'a key with a value sets (or overwrites) that label, one with null removes it; the others stay') },
  { additionalProperties: false },
);

export const JoinTokenBody = Type.Object(
  { ttl: Type.Optional(Type.String({ description: 'how long the token may be used: 90m, 12h, 2d (default 1h, at most 7d)' })) },
  { additionalProperties: false },
);
export const JoinTokenReply = Type.Object({
  token: Type.String({ description: 'corral1.<id>.<secret>.<CA SHA-256>: give it to `corral agent --join URL --token T`; it works once' }),
  id: Type.String(),
  expiresAt: Type.String(),
  caSha256: Type.String(),
});

export const ClusterCa = Type.Object({ certPem: Type.String(), sha256: Type.String() });

export const JoinBody = Type.Object(
  {
    token: Type.String(),
    name: Type.String({ description: 'the host\'s name in the cluster (DNS label)' }),
    uuid: Type.String(),
    address: Type.String({ description: 'the agent\'s API URL (https://IP:PORT), or empty' }),
    csr: Type.String({ description: 'a PEM certificate request for the agent\'s key (its subject is ignored)' }),
    agentVersion: Type.String(),
    labels: Type.Optional(Dict(Type.String(), 'the labels the host joins with (corral agent --label KEY=VALUE)')),
  },
  { additionalProperties: false },
);
export type JoinBody = Static<typeof JoinBody>;
export const JoinReply = Type.Object({ certPem: Type.String(), caPem: Type.String(), host: ClusterHost });

/** One instance as an agent reports it in its heartbeat (src/services/instance-view.ts InstanceSummary). */
export const InstanceSummary = Type.Pick(
  Instance,
  ['name', 'uuid', 'state', 'image', 'cpus', 'memory', 'accel', 'pid', 'startedAt', 'lastError', 'updatedAt'],
  { additionalProperties: false, title: 'InstanceSummary' },
);
export type InstanceSummary = Static<typeof InstanceSummary>;

/** One of a host's own events, as its store keeps it. */
const HostEvent = Type.Object({
  id: Type.Integer({ minimum: 1 }), time: Type.String(), type: Type.String({ maxLength: 100 }), instance: nullable(Type.String({ maxLength: 100 })),
  data: Type.Record(Type.String(), Type.Unknown()),
}, { additionalProperties: false });

export const HeartbeatBody = Type.Object(
  {
    capacity: Type.Unknown(),
    allocation: Type.Unknown(),
    agentVersion: Type.String(),
    sharedPool: Type.Optional(nullable(Type.String({ description: 'where the host mounts the shared storage' }))),
    ha: Type.Optional(Type.Array(Type.String(), { description: 'the HA instances this host has records of' })),
    cpuReport: Type.Optional(nullable(CpuReport, 'sent when it changed since the last beat a controller answered (and on the first beat to a controller)')),
    memoryReport: Type.Optional(MemoryReport),
    instances: Type.Optional(Type.Array(InstanceSummary, {
      description: 'every instance of the host, sent only when the list changed since the last beat a controller answered (and on the first beat to a controller)',
    })),
    events: Type.Optional(Type.Array(HostEvent, {
      maxItems: 1000,
      description: 'the host\'s own events after the id the last reply named (eventsAfter), oldest first',
    })),
    migrations: Type.Optional(Type.Array(Type.Object({
      name: Type.String(), uuid: Type.String(),
      side: Type.Union([Type.Literal('incoming'), Type.Literal('outgoing')]),
    }, { additionalProperties: false }), {
      maxItems: 10_000,
      description: 'records a live migration left here: incoming sides not finished, sources waiting in postmigrate',
    })),
  },
  { additionalProperties: false },
);
export type HeartbeatBody = Static<typeof HeartbeatBody>;
export const HeartbeatReply = Type.Object({
  host: Type.String(),
  state: literals(HOST_STATES),
  leaseMs: Type.Integer({ description: 'the lease a beat renews: the agent kills its HA instances when none was answered for this long' }),
  watchdogMs: Type.Integer({ description: 'the host watchdog\'s timeout: it kills the HA instances when the agent stops petting it this long' }),
  forget: Type.Array(Type.String(), { description: 'instances the cluster runs on another host now: the agent removes its records of them' }),
  abandon: Type.Optional(Type.Array(Type.String(), { description: 'of the migrations reported, those no controller will finish: the agent removes them (their shared disks stay)' })),
  eventsAfter: Type.Optional(Type.Integer({ description: 'the newest of the host\'s own events the cluster has (0: none yet): the next beat sends those after it' })),
});
