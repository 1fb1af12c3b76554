/** The persistence interface. SQLite is the embedded default; a PostgreSQL store can implement the same. */
import type { InstanceState } from '../core/state.js';
import type { Accelerator, InstanceSpec } from '../core/spec.js';
import type { InstanceNic } from '../core/spec-schema.js';
import type { Role } from '../core/tokens.js';

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

/** An API token as stored: the SHA-256 of its secret (hex), never the secret. */
export interface TokenRow {
  name: string;
  role: Role;
  hash: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** API tokens: one row per name; a revoked token's row stays (so its holder is told it was revoked) until the name is used again. */
export interface TokenStore {
  listTokens(): TokenRow[];
  getToken(name: string): TokenRow | null;
  tokenByHash(hash: string): TokenRow | null;
  /** ALREADY_EXISTS when the name is taken */
  insertToken(row: TokenRow): void;
  deleteToken(name: string): void;
  setTokenLastUsed(name: string, at: string): void;
  revokeToken(name: string, at: string): void;
}

/** A NIC of an instance's spec, with the instance's name. */
export interface PlacedNic {
  instance: string;
  nic: InstanceNic;
}

export interface Store extends TokenStore {
  /** every instance, by name; or only those in one of `states` (an index: the others are not read) */
  listInstances(states?: readonly InstanceState[]): InstanceRow[];
  /** whether a NIC of any instance has this MAC (an index: no instance is read) */
  macInUse(mac: string): boolean;
  /** the NICs, of every instance, that forward host ports */
  nicsWithForwards(): PlacedNic[];
  getInstance(name: string): InstanceRow | null;
  insertInstance(row: InstanceRow): void;
  updateInstance(uuid: string, patch: Partial<Omit<InstanceRow, 'uuid' | 'name' | 'createdAt'>>): void;
  deleteInstance(uuid: string): void;
  appendEvent(type: string, instance: string | null, data: Record<string, unknown>): StoredEvent;
  eventsSince(id: number, limit: number): StoredEvent[];
  /** the newest `limit` events, oldest first */
  latestEvents(limit: number): StoredEvent[];
  close(): void;
}
