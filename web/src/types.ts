/**
 * What the API sends and takes, as its own TypeBox schemas say (src/api/schemas-*.ts): types only, erased from the
 * bundle. A field the page reads that the API stops sending is a compile error here.
 */
import type { Static } from '@sinclair/typebox';
import type { CreateInstanceBody, DevicePath, Instance as InstanceSchema, Pool as PoolSchema } from '../../src/api/schemas-instances.js';
import type { Event as EventSchema } from '../../src/api/schemas-events.js';
import type { Image as ImageSchema, Volume as VolumeSchema, CreateVolumeBody, AttachDiskBody } from '../../src/api/schemas-storage.js';
import type { Network as NetworkSchema, AttachNicBody } from '../../src/api/schemas-network.js';
import type { Session as SessionSchema } from '../../src/api/schemas-auth.js';
import type { Host as HostSchema } from '../../src/api/schemas-host.js';
import type { CpuStats as CpuStatsSchema, MemoryStats as MemoryStatsSchema } from '../../src/api/schemas-compute.js';
import type { HistorySummary as HistorySummarySchema, InstanceHistory as InstanceHistorySchema } from '../../src/api/schemas-history.js';

export type Instance = InstanceSchema;
export type Pool = PoolSchema;
export type Device = DevicePath;
export type CorralEvent = EventSchema;
export type Image = ImageSchema;
export type Volume = VolumeSchema;
export type Network = NetworkSchema;
export type Session = SessionSchema;
export type Host = HostSchema;
export type CpuStats = CpuStatsSchema;
export type MemoryStats = MemoryStatsSchema;
export type InstanceHistory = InstanceHistorySchema;
export type HistorySeries = InstanceHistory['series'];
export type HistorySummary = HistorySummarySchema;
export type CreateRequest = CreateInstanceBody;
export type CreateVolume = Static<typeof CreateVolumeBody>;
export type AttachDisk = Static<typeof AttachDiskBody>;
export type AttachNic = Static<typeof AttachNicBody>;
export type InstanceState = Instance['state'];

/** One host in a cluster controller's GET /v1/pool (src/cluster/controller-instances.ts). */
export interface PoolHost {
  name: string;
  state: string;
  capacity: { cpus: number; memory: number };
  allocated: { cpus: number; memory: number; instances: number };
  free: { cpus: number; memory: number };
}

/** A cluster controller's GET /v1/pool: the sums over the hosts that are up (allocated: over all), and each host's. */
export interface ClusterPool {
  capacity: { cpus: number; memory: number };
  allocated: { cpus: number; memory: number; instances: number };
  free: { cpus: number; memory: number };
  hosts: PoolHost[];
}

/** What GET /v1/pool answers: a daemon's pool, or a controller's with its hosts. */
export type AnyPool = Pool | ClusterPool;

export const isClusterPool = (p: AnyPool): p is ClusterPool => Array.isArray((p as ClusterPool).hosts);

/** An instance as a controller lists it: with the host it is on. */
export type ListedInstance = Instance & { host?: string };
