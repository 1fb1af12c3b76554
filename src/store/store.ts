/** The persistence interface. SQLite is the embedded default; a PostgreSQL store can implement the same. */
import type { InstanceState } from '../core/state.js';
import type { Accelerator, InstanceSpec } from '../core/spec.js';

export interface InstanceRow {
  uuid: string;
  name: string;
  spec: InstanceSpec;
  state: InstanceState;
  /** The accelerator the running QEMU uses (null when never started). */
  accel: Accelerator | null;
  pid: number | null;
  pidStart: number | null;
  mac: string;
  createdAt: string;
  startedAt: string | null;
  lastError: string | null;
  updatedAt: string;
}

export interface StoredEvent {
  id: number;
  time: string;
  type: string;
  instance: string | null;
  data: Record<string, unknown>;
}

export interface Store {
  listInstances(): InstanceRow[];
  getInstance(name: string): InstanceRow | null;
  insertInstance(row: InstanceRow): void;
  updateInstance(uuid: string, patch: Partial<Omit<InstanceRow, 'uuid' | 'name' | 'createdAt'>>): void;
  deleteInstance(uuid: string): void;
  appendEvent(type: string, instance: string | null, data: Record<string, unknown>): StoredEvent;
  eventsSince(id: number, limit: number): StoredEvent[];
  close(): void;
}
