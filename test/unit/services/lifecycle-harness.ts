/**
 * An InstanceService over the fake hypervisor (src/vm/fake-driver.ts), a real SQLite store in a temporary
 * data dir, and services' hooks stood in for by ledgers of the host resources they would make and undo.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { instancePaths } from '../../../src/core/paths.js';
import { DEFAULT_POOL_CONFIG } from '../../../src/core/pool.js';
import { validateCreate, type CreateRequest } from '../../../src/core/spec.js';
import type { InstanceState } from '../../../src/core/state.js';
import { EventBus } from '../../../src/services/events.js';
import type { HookOwner, InstanceHooks } from '../../../src/services/instance-hooks.js';
import { InstanceService } from '../../../src/services/instances.js';
import type { SharedPool } from '../../../src/services/shared-pool.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { FakeDriver } from '../../../src/vm/fake-driver.js';

const GiB = 1024 ** 3;

const IMAGE: ImageRecord = {
  name: 'tiny', kind: 'kernel', format: 'qcow2', disk: '/images/tiny/root.qcow2', kernel: '/images/tiny/vmlinuz', initrd: '/images/tiny/initrd',
  cmdline: 'console=ttyS0', virtualSize: GiB, createdAt: '2026-01-01T00:00:00.000Z', source: 'tiny',
};

/** What a service's hooks hold on the host (taps, bound devices, cgroups): made by one hook, undone by `exited`. */
export class Ledger {
  readonly held = new Set<string>();
  readonly calls: string[] = [];
}

export type HookStep = 'beforeLaunch' | 'beforeSpawn' | 'launched';

/** Hooks of `owner` that hold a resource per instance from beforeLaunch to exited; `fail` makes one step throw. */
export function ledgerHooks(owner: HookOwner, ledger: Ledger, fail: { step?: HookStep; error?: Error } = {}): InstanceHooks {
  const step = (s: HookStep, row: InstanceRow): void => {
    ledger.calls.push(`${owner}.${s}`);
    if (fail.step === s) throw fail.error ?? new Error(`${owner} ${s} failed`);
    ledger.held.add(`${owner}:${s}:${row.uuid}`);
  };
  return {
    beforeLaunch: async (row) => step('beforeLaunch', row),
    beforeSpawn: async (row) => step('beforeSpawn', row),
    launched: async (row) => step('launched', row),
    adopted: async (row) => { ledger.calls.push(`${owner}.adopted`); ledger.held.add(`${owner}:adopted:${row.uuid}`); },
    exited: async (row) => {
      ledger.calls.push(`${owner}.exited`);
      for (const k of [...ledger.held]) if (k.endsWith(row.uuid) && k.startsWith(`${owner}:`)) ledger.held.delete(k);
    },
  };
}

export interface Harness {
  svc: InstanceService;
  driver: FakeDriver;
  store: SqliteStore;
  events: EventBus;
  dataDir: string;
  warnings: string[];
  add(name: string, req?: Partial<CreateRequest>): InstanceRow;
  row(name: string): InstanceRow;
  state(name: string): InstanceState;
  /** The instance.state events of `name`, as "from->to". */
  transitions(name: string): string[];
  /** What exists of an instance's runtime: its run dir, its status file. */
  runDirExists(name: string): boolean;
  exitInfo(name: string): Record<string, unknown> | null;
  /** A new service over the same store and driver: what a restarted daemon sees. */
  restart(hooks?: Array<[HookOwner, InstanceHooks]>): Harness;
}

export interface HarnessOptions {
  hooks?: Array<[HookOwner, InstanceHooks]>;
  /** the host's capacity for the pool (default 8 CPUs, 16 GiB) */
  host?: { cpus: number; memory: number };
  driver?: FakeDriver;
  dataDir?: string;
  /** the host's shared pool (--shared-pool) */
  sharedPool?: SharedPool;
}

export function harness(o: HarnessOptions = {}): Harness {
  const dataDir = o.dataDir ?? mkdtempSync(join(tmpdir(), 'corral-lifecycle-'));
  if (!o.dataDir) after(() => rmSync(dataDir, { recursive: true, force: true }));
  const store = new SqliteStore(join(dataDir, 'corral.db'));
  after(() => store.close());
  const events = new EventBus(store);
  const driver = o.driver ?? new FakeDriver();
  const host = o.host ?? { cpus: 8, memory: 16 * GiB };
  const warnings: string[] = [];
  const svc = new InstanceService({
    dataDir, store, events, driver,
    images: { get: () => IMAGE, claim: () => () => undefined },
    host: { cpus: host.cpus, memory: host.memory, cpuList: Array.from({ length: host.cpus }, (_, i) => i) },
    accelerator: async () => 'tcg',
    pool: { host, config: { ...DEFAULT_POOL_CONFIG, reservedMemory: 0 } },
    log: { info: () => {}, warn: (obj, m) => { warnings.push(`${m ?? ''} ${JSON.stringify(obj)}`); } },
    ...(o.sharedPool ? { sharedPool: o.sharedPool } : {}),
  });
  for (const [owner, h] of o.hooks ?? []) svc.addHooks(owner, h);
  const row = (name: string): InstanceRow => {
    const r = store.getInstance(name);
    if (!r) throw new Error(`no instance ${name}`);
    return r;
  };
  const h: Harness = {
    svc, driver, store, events, dataDir, warnings,
    add(name, req = {}) {
      const { spec } = validateCreate({ name, image: 'tiny', network: 'none', memory: '256M', accel: 'tcg', ...req }, { cpus: 64, memory: 1024 * GiB, cpuList: [0] });
      spec.nics = [];
      const now = new Date().toISOString();
      const uuid = `00000000-0000-4000-8000-${String(store.listInstances().length + 1).padStart(12, '0')}`;
      const r: InstanceRow = {
        uuid, name, spec, state: 'stopped', accel: null, pid: null, pidStart: null, mac: '52:54:00:00:00:01',
        createdAt: now, startedAt: null, lastError: null, updatedAt: now,
      };
      mkdirSync(instancePaths(dataDir, uuid).dir, { recursive: true });
      store.insertInstance(r);
      return r;
    },
    row,
    state: (name) => row(name).state,
    transitions(name) {
      return store.eventsSince(0, 10_000).filter((e) => e.type === 'instance.state' && e.instance === name).map((e) => `${String(e.data.from)}->${String(e.data.to)}`);
    },
    runDirExists: (name) => existsSync(instancePaths(dataDir, row(name).uuid).runDir),
    exitInfo(name) {
      const f = instancePaths(dataDir, row(name).uuid).exitInfo;
      return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown> : null;
    },
    restart(hooks = []) {
      svc.detachAll();
      return harness({ hooks, host, driver, dataDir, ...(o.sharedPool ? { sharedPool: o.sharedPool } : {}) });
    },
  };
  return h;
}

/** A harness with one instance, `vm`, started. */
export async function started(o: HarnessOptions = {}): Promise<Harness> {
  const h = harness(o);
  h.add('vm');
  await h.svc.start('vm');
  return h;
}

/** Resolves when `cond` holds (checked on each turn of the event loop), or rejects after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}
