/** Schemas of an instance's CPUs and memory: statistics, the memory map, and resizes. */
import { Type, type Static } from '@sinclair/typebox';
import { Size } from '../core/request-schema.js';
import { TopologySchema } from '../core/spec-schema.js';
import { Dict, nullable } from './schemas-common.js';

export const ResizeCpusBody = Type.Object({ count: Type.Integer({ description: 'vCPUs the running guest should have (at most maxCpus)' }) }, { additionalProperties: false });
export const ResizeMemoryBody = Type.Object({ size: Size }, { additionalProperties: false });

export const VcpuStat = Type.Object({
  index: Type.Integer(),
  threadId: Type.Integer(),
  qomPath: Type.String(),
  cpuTime: nullable(Type.Number(), 'user + system seconds on the host'),
  lastCpu: nullable(Type.Integer()),
  allowed: nullable(Type.String(), 'host CPUs the thread may run on (Cpus_allowed_list)'),
});

export const CgroupReading = Type.Object({
  version: Type.Union([Type.Literal('v1'), Type.Literal('v2')]),
  name: Type.String(),
  dirs: Type.Object({ cpu: Type.String(), cpuacct: Type.Optional(Type.String()), memory: Type.Optional(Type.String()) }),
  cpuWeight: nullable(Type.Integer(), '1..10000; null = the default'),
  cpuLimit: nullable(Type.Number(), 'CPUs; null = no cap'),
  memoryLimit: nullable(Type.Integer(), 'bytes; null = no limit'),
  cpuUsage: nullable(Type.Number(), 'CPU time used by the group, seconds'),
  memoryUsage: nullable(Type.Integer(), 'memory charged to the group, bytes'),
  pids: Type.Array(Type.Integer()),
});

const Counters = Dict(Type.Number(), 'counter name -> value');

export const ExitStats = Type.Union([
  Type.Object({
    available: Type.Literal(true),
    vcpus: Type.Array(Type.Object({ index: nullable(Type.Integer()), qomPath: nullable(Type.String()), counters: Counters })),
    total: Counters,
  }),
  Type.Object({ available: Type.Literal(false), reason: Type.String() }),
], { description: 'VM exits per vCPU (KVM only)' });

/** GET /v1/instances/{name}/cpu. */
export const CpuStats = Type.Object(
  {
    name: Type.String(),
    accel: nullable(Type.String()),
    pid: Type.Integer(),
    cpus: Type.Integer(),
    maxCpus: Type.Integer(),
    topology: TopologySchema,
    pin: nullable(Type.String(), 'the pinning as a CPU list'),
    vcpus: Type.Array(VcpuStat),
    cgroup: nullable(CgroupReading),
    exits: ExitStats,
  },
  { title: 'CpuStats' },
);
export type CpuStats = Static<typeof CpuStats>;

/** A resize of a stopped instance: the count or size its next start boots with. */
export const StoppedCpuResize = Type.Object({ name: Type.String(), cpus: Type.Integer(), state: Type.String() }, { title: 'StoppedCpuResize' });
export type StoppedCpuResize = Static<typeof StoppedCpuResize>;

export const MemoryMapEntry = Type.Object({
  region: Type.String(),
  gpaStart: Type.Integer(),
  gpaEnd: Type.Integer(),
  hvaStart: nullable(Type.Integer()),
  hvaEnd: nullable(Type.Integer()),
  size: Type.Integer(),
  resident: nullable(Type.Integer(), 'bytes of the range resident in host RAM; null when the pagemap cannot be read'),
  swapped: nullable(Type.Integer()),
});

/** GET /v1/instances/{name}/memory, and the reply of a live resize. */
export const MemoryStats = Type.Object(
  {
    name: Type.String(),
    configured: Type.Object({ memory: Type.Integer(), maxMemory: nullable(Type.Integer()), balloon: Type.Boolean() }),
    requested: nullable(Type.Integer(), 'the size a resize since this QEMU started asked for (null: the boot size)'),
    guest: Type.Object({
      visible: Type.Integer({ description: 'memory the guest can use: the boot memory less the balloon, plus what virtio-mem has plugged' }),
      balloon: nullable(Type.Integer()),
      plugged: nullable(Type.Integer()),
      total: nullable(Type.Integer(), 'as the guest reports it through the balloon (null before its first report)'),
      free: nullable(Type.Integer()),
      available: nullable(Type.Integer()),
      used: nullable(Type.Integer()),
    }),
    host: Type.Object({ rss: nullable(Type.Integer()), anonymous: nullable(Type.Integer()), shared: nullable(Type.Integer()), swap: nullable(Type.Integer()) }),
    map: Type.Array(MemoryMapEntry),
  },
  { title: 'MemoryStats' },
);
export type MemoryStats = Static<typeof MemoryStats>;

export const StoppedMemoryResize = Type.Object({ name: Type.String(), memory: Type.Integer(), state: Type.String() }, { title: 'StoppedMemoryResize' });
export type StoppedMemoryResize = Static<typeof StoppedMemoryResize>;
