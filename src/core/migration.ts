/**
 * Live migration's pure rules: which instances can move (nothing tied to the host: local disks move with a live
 * migration's mirrors, but a stopped instance's record moves alone only without them), the only migrate URI accepted (tcp:IP:PORT: never `exec:` or anything built from user text), the
 * parameters QEMU gets, and the figures read back from query-migrate.
 */
import { isIP } from 'node:net';
import { CorralError } from './errors.js';
import { isVhostUser } from './disks.js';
import type { InstanceSpec } from './spec.js';

/** QEMU's own default downtime limit */
export const DEFAULT_MAX_DOWNTIME_MS = 300;
/** QEMU's own default bandwidth cap (7.2: 128 MiB/s), bytes per second */
export const QEMU_DEFAULT_MAX_BANDWIDTH = 128 * 1024 * 1024;
export const DEFAULT_MIGRATION_TIMEOUT_S = 600;

/**
 * What keeps an instance from moving, one line each naming the disk or device (empty: it can move). A root disk on
 * the local pool and attached volumes move with it (core/migration-disks.ts: NBD mirroring); host PCI devices and
 * SR-IOV VFs hold hardware state QEMU cannot send; a vhost-user device's back end is a process of the source host.
 */
export function migrationBlockers(spec: Pick<InstanceSpec, 'rootPool' | 'disks' | 'nics' | 'hostdevs'>): string[] {
  const out: string[] = [];
  for (const d of spec.disks ?? []) {
    if (isVhostUser(d.bus)) out.push(`disk ${d.volume}: a vhost-user-blk device (its back end runs on this host)`);
  }
  for (const h of spec.hostdevs ?? []) out.push(`host device ${h.id} (${h.address}): PCI passthrough`);
  for (const n of spec.nics ?? []) {
    if (n.model === 'sriov') out.push(`NIC ${n.id}: an SR-IOV VF (PCI passthrough)`);
    else if (n.model === 'vhost-user-net') out.push(`NIC ${n.id}: vhost-user-net (its back end runs on this host)`);
  }
  return out;
}

/**
 * What keeps a stopped instance's record from moving to another host alone (an evacuation's cold move: its disks are
 * not copied): what live migration refuses, and every disk that is a file of this host, a root disk on the local pool
 * or a volume (those move only with a live migration, which mirrors them while the guest runs).
 */
export function recordMoveBlockers(spec: Parameters<typeof migrationBlockers>[0]): string[] {
  const out: string[] = [];
  if (spec.rootPool !== 'shared') out.push('root disk: on the host\'s local pool');
  for (const d of spec.disks ?? []) if (!isVhostUser(d.bus)) out.push(`disk ${d.volume}: a volume on the host's local storage`);
  return [...out, ...migrationBlockers(spec)];
}

export function assertMigratable(name: string, spec: Parameters<typeof migrationBlockers>[0]): void {
  const why = migrationBlockers(spec);
  if (why.length > 0) throw new CorralError('NOT_MIGRATABLE', `instance "${name}" cannot be live-migrated: ${why.join('; ')}`, { name, blockers: why });
}

/** A migrate URI: tcp:IPv4:PORT or tcp:[IPv6]:PORT, nothing else. */
export function parseMigrateUri(uri: unknown): { host: string; port: number; uri: string } {
  const bad = (): CorralError => new CorralError('INVALID_SPEC', `uri: a migration goes to tcp:IP:PORT only, got ${JSON.stringify(uri)}`, { field: 'uri' });
  if (typeof uri !== 'string' || uri.length > 64) throw bad();
  const m = /^tcp:(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(uri);
  if (!m) throw bad();
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(host) !== (m[1] ? 6 : 4) || port < 1 || port > 65535 || String(port) !== m[3]) throw bad();
  return { host, port, uri };
}

/** The URI an incoming QEMU listens on. */
export function migrateUri(host: string, port: number): string {
  return parseMigrateUri(isIP(host) === 6 ? `tcp:[${host}]:${port}` : `tcp:${host}:${port}`).uri;
}

export interface MigrationOptions {
  maxDowntimeMs: number;
  /** bytes per second; null: QEMU's default */
  bandwidth: number | null;
  autoConverge: boolean;
  /** switch to postcopy once the first pass is done (core/migration-transport.ts: shouldStartPostcopy) */
  postcopy: boolean;
}

/** The options of a migrate request, checked (INVALID_SPEC naming the field). */
export function migrationOptions(body: { maxDowntimeMs?: unknown; bandwidth?: unknown; autoConverge?: unknown; postcopy?: unknown }): MigrationOptions {
  const ms = body.maxDowntimeMs ?? DEFAULT_MAX_DOWNTIME_MS;
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > 2_000_000) throw new CorralError('INVALID_SPEC', `maxDowntimeMs: a whole number of milliseconds from 1 to 2000000, got ${JSON.stringify(ms)}`, { field: 'maxDowntimeMs' });
  const bw = body.bandwidth ?? null;
  if (bw !== null && (typeof bw !== 'number' || !Number.isInteger(bw) || bw < 1)) throw new CorralError('INVALID_SPEC', `bandwidth: bytes per second, a whole number above 0, got ${JSON.stringify(bw)}`, { field: 'bandwidth' });
  const ac = body.autoConverge ?? true;
  if (typeof ac !== 'boolean') throw new CorralError('INVALID_SPEC', 'autoConverge: must be true or false', { field: 'autoConverge' });
  const pc = body.postcopy ?? false;
  if (typeof pc !== 'boolean') throw new CorralError('INVALID_SPEC', 'postcopy: must be true or false', { field: 'postcopy' });
  return { maxDowntimeMs: ms, bandwidth: bw as number | null, autoConverge: ac, postcopy: pc };
}

/**
 * QEMU's parameters and capabilities for these options. Every one is set, the defaults too: a QEMU keeps its
 * parameters from one migration to the next, so a cancelled migration's cap (`--bandwidth 1M/s`) would otherwise
 * slow the next one down.
 */
export function qemuMigrationSettings(o: MigrationOptions): { parameters: Record<string, unknown>; capabilities: Record<string, boolean> } {
  return {
    parameters: { 'downtime-limit': o.maxDowntimeMs, 'max-bandwidth': o.bandwidth ?? QEMU_DEFAULT_MAX_BANDWIDTH },
    capabilities: { 'auto-converge': o.autoConverge, 'postcopy-ram': o.postcopy },
  };
}

/** A migration's figures as QEMU reports them (query-migrate on the source). */
export interface MigrationFigures {
  status: string;
  totalMs: number | null;
  downtimeMs: number | null;
  expectedDowntimeMs: number | null;
  setupMs: number | null;
  transferredBytes: number | null;
  remainingBytes: number | null;
  totalBytes: number | null;
  /** transfer rate, bytes per second */
  rate: number | null;
  /** dirty pages per second, in bytes */
  dirtyRate: number | null;
  /** RAM passes (QEMU's dirty-sync-count) */
  passes: number | null;
  error: string | null;
}

export function migrationFigures(i: { status?: string; 'total-time'?: number; downtime?: number; 'expected-downtime'?: number; 'setup-time'?: number; 'error-desc'?: string; ram?: Record<string, number | undefined> }): MigrationFigures {
  const ram = i.ram ?? {};
  const page = ram['page-size'] ?? 4096;
  return {
    status: i.status ?? 'none',
    totalMs: i['total-time'] ?? null,
    downtimeMs: i.downtime ?? null,
    expectedDowntimeMs: i['expected-downtime'] ?? null,
    setupMs: i['setup-time'] ?? null,
    transferredBytes: ram.transferred ?? null,
    remainingBytes: ram.remaining ?? null,
    totalBytes: ram.total ?? null,
    rate: ram.mbps !== undefined ? Math.round((ram.mbps * 1e6) / 8) : null,
    dirtyRate: ram['dirty-pages-rate'] !== undefined ? ram['dirty-pages-rate'] * page : null,
    passes: ram['dirty-sync-count'] ?? null,
    error: i['error-desc'] ?? null,
  };
}

/** Whether QEMU's migration status is a final one, and which. */
export function migrationOutcome(status: string): 'completed' | 'failed' | 'cancelled' | null {
  if (status === 'completed') return 'completed';
  if (status === 'failed') return 'failed';
  if (status === 'cancelled') return 'cancelled';
  return null;
}
