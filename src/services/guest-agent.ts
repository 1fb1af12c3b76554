/**
 * The guest agent of each running instance (qemu-guest-agent in the guest, reached over the virtio-serial channel
 * every instance has unless created with --no-agent): what `show` adds (the guest's OS and addresses, asked with a
 * short timeout and cached briefly, absent when the agent does not answer), `exec` (guest-exec, then
 * guest-exec-status until the command ends), the NIC counters of user-mode NICs (which the host has none of: the
 * metrics, the history and `corral stats` take them from here), and the shutdown a stop asks for when the guest
 * ignores ACPI. One client per running instance (src/qemu/qga.ts: calls take turns on it), dropped when its QEMU ends.
 */
import { CorralError } from '../core/errors.js';
import {
  agentUnavailable, checkExec, EXEC_DEFAULT_TIMEOUT_S, execPollDelay, parseExecStatus, parseInterfaces, parseOsInfo,
  type ExecResult, type GuestInfo,
} from '../core/guest-agent.js';
import { parseGuestNicCounters, type GuestNicCounters } from '../core/guest-nic-counters.js';
import type { InstancePaths } from '../core/paths.js';
import { QgaClient } from '../qemu/qga.js';
import type { InstanceRow } from '../store/store.js';
import type { InstanceHooks } from './instance-hooks.js';

/** How long `show` waits for the agent, in all. */
export const INFO_TIMEOUT_MS = 2000;
/** How long an answer (or the lack of one) serves `show`. */
export const INFO_CACHE_MS = 5000;
/** How long one reading of the NIC counters serves every reader (a scrape and the history's pass share it). */
export const NIC_COUNTERS_FRESH_MS = 1000;
/** How long a sampling pass waits for the counters; a later answer serves the next pass. */
export const NIC_COUNTERS_WAIT_MS = 1000;
/** A reading older than this is not given (no figures rather than old ones). */
export const NIC_COUNTERS_STALE_MS = 10_000;
/** The agent call's own limit (one at a time per instance). */
export const NIC_COUNTERS_CALL_MS = 3000;
/** One agent command of exec, a stop's shutdown: the agent answers at once or is not there. */
export const CALL_TIMEOUT_MS = 5000;

export interface ExecRequest {
  command: string[];
  stdin: Buffer | null;
  /** seconds until the daemon stops waiting (the command may still run in the guest) */
  timeout?: number;
}

export interface GuestAgentDeps {
  instances: { rowOf(name: string): InstanceRow; paths(row: InstanceRow): InstancePaths };
  /** the client of a channel (tests give a fake agent's socket through the paths instead) */
  client?: (socket: string, what: string) => QgaClient;
}

export class GuestAgentService {
  private clients = new Map<string, QgaClient>();
  private infoCache = new Map<string, { at: number; info: GuestInfo | null; pending?: Promise<GuestInfo | null> }>();
  private nicCache = new Map<string, { at: number; counters: GuestNicCounters[] | null; pending: Promise<void> | null }>();

  constructor(private d: GuestAgentDeps) {}

  /** Each QEMU's end drops its client and what was cached of its guest. */
  hooks(): InstanceHooks {
    return { exited: (row) => this.forget(row.uuid) };
  }

  /**
   * The client of a running instance with the agent's channel (`stopping` too, for the stop's own shutdown);
   * AGENT_UNAVAILABLE saying why otherwise.
   */
  private clientOf(row: InstanceRow, stopping = false): QgaClient {
    if (!row.spec.agent) throw agentUnavailable(row.name, 'no-channel');
    const live = row.state === 'running' || (stopping && row.state === 'stopping');
    if (!live || row.pid === null) throw agentUnavailable(row.name, 'not-running', row.state);
    let c = this.clients.get(row.uuid);
    if (!c) {
      const socket = this.d.instances.paths(row).agent;
      const what = `instance "${row.name}"`;
      c = this.d.client ? this.d.client(socket, what) : new QgaClient(socket, what);
      this.clients.set(row.uuid, c);
    }
    return c;
  }

  private forget(uuid: string): void {
    this.clients.get(uuid)?.close();
    this.clients.delete(uuid);
    this.infoCache.delete(uuid);
    this.nicCache.delete(uuid);
  }

  /**
   * The guest's OS and network interfaces, or null when the agent cannot tell (no channel, not running, no answer
   * within INFO_TIMEOUT_MS). Never throws; answers (and silences) are kept INFO_CACHE_MS.
   */
  async info(row: InstanceRow): Promise<GuestInfo | null> {
    if (!row.spec.agent || row.state !== 'running') return null;
    const hit = this.infoCache.get(row.uuid);
    if (hit?.pending) return hit.pending;
    if (hit && Date.now() - hit.at < INFO_CACHE_MS) return hit.info;
    const pending = this.askInfo(row);
    this.infoCache.set(row.uuid, { at: Date.now(), info: hit?.info ?? null, pending });
    const info = await pending;
    if (this.infoCache.get(row.uuid)?.pending === pending) this.infoCache.set(row.uuid, { at: Date.now(), info });
    return info;
  }

  private async askInfo(row: InstanceRow): Promise<GuestInfo | null> {
    const deadline = Date.now() + INFO_TIMEOUT_MS;
    try {
      const c = this.clientOf(row);
      const os = parseOsInfo(await c.call('guest-get-osinfo', undefined, INFO_TIMEOUT_MS));
      const interfaces = parseInterfaces(await c.call('guest-network-get-interfaces', undefined, Math.max(1, deadline - Date.now())));
      return { os, interfaces };
    } catch {
      return null;
    }
  }

  /**
   * The guest's interfaces' counters (guest-network-get-interfaces' statistics), for the NICs the host has none of;
   * null when the agent cannot tell (no channel, not running, no answer). Never throws, and never holds a sampling
   * pass longer than NIC_COUNTERS_WAIT_MS: at most one call is in flight per instance, a reading serves every
   * caller for NIC_COUNTERS_FRESH_MS, and one that came too late for its pass serves the next (up to
   * NIC_COUNTERS_STALE_MS old).
   */
  async nicCounters(row: InstanceRow): Promise<GuestNicCounters[] | null> {
    if (!row.spec.agent || row.state !== 'running' || row.pid === null) return null;
    let e = this.nicCache.get(row.uuid);
    if (e && !e.pending && Date.now() - e.at < NIC_COUNTERS_FRESH_MS) return e.counters;
    if (!e) {
      e = { at: 0, counters: null, pending: null };
      this.nicCache.set(row.uuid, e);
    }
    const entry = e;
    entry.pending ??= this.askNicCounters(row)
      .then((counters) => { entry.at = Date.now(); entry.counters = counters; })
      .finally(() => { entry.pending = null; });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answered = await Promise.race([
      entry.pending.then(() => true),
      new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), NIC_COUNTERS_WAIT_MS); }),
    ]);
    clearTimeout(timer);
    if (answered) return entry.counters;
    return entry.counters !== null && Date.now() - entry.at < NIC_COUNTERS_STALE_MS ? entry.counters : null;
  }

  private async askNicCounters(row: InstanceRow): Promise<GuestNicCounters[] | null> {
    try {
      return parseGuestNicCounters(await this.clientOf(row).call('guest-network-get-interfaces', undefined, NIC_COUNTERS_CALL_MS));
    } catch {
      return null;
    }
  }

  /** Run a command in the guest and wait for it to end: its exit code and output (guest-exec with capture-output). */
  async exec(name: string, req: ExecRequest): Promise<ExecResult> {
    const timeoutS = req.timeout ?? EXEC_DEFAULT_TIMEOUT_S;
    checkExec(req.command, req.stdin, timeoutS);
    const row = this.d.instances.rowOf(name);
    const c = this.clientOf(row);
    const deadline = Date.now() + timeoutS * 1000;
    const [path, ...arg] = req.command as [string, ...string[]];
    const started = await c.call<{ pid?: unknown }>('guest-exec', {
      path, arg, 'capture-output': true, ...(req.stdin !== null && req.stdin.length > 0 ? { 'input-data': req.stdin.toString('base64') } : {}),
    }, CALL_TIMEOUT_MS);
    const pid = started?.pid;
    if (typeof pid !== 'number') throw new CorralError('AGENT_FAILED', `the guest agent of instance "${name}" started ${JSON.stringify(path)} but gave no pid`, { command: 'guest-exec' });
    for (let attempt = 0; ; attempt++) {
      const st = parseExecStatus(await c.call('guest-exec-status', { pid }, CALL_TIMEOUT_MS));
      if (st) return st;
      const wait = execPollDelay(attempt);
      if (Date.now() + wait > deadline) {
        throw new CorralError('TIMEOUT', `${JSON.stringify(req.command.join(' ').slice(0, 200))} did not end within ${timeoutS}s in instance "${name}" (pid ${pid} in the guest, which may still run it)`, { pid, timeout: timeoutS });
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  /**
   * Freeze the guest's filesystems for a snapshot (guest-fsfreeze-freeze: each is synced and its writes held):
   * how many it froze, or null when the agent cannot be asked (no channel, no answer within `timeoutMs`) or refused
   * (the snapshot is then crash-consistent only). Whatever it answers, the caller thaws afterwards: a freeze that
   * timed out here may still happen in the guest.
   */
  async freeze(row: InstanceRow, timeoutMs = CALL_TIMEOUT_MS): Promise<number | null> {
    try {
      const n = await this.clientOf(row).call<unknown>('guest-fsfreeze-freeze', undefined, timeoutMs);
      return typeof n === 'number' ? n : null;
    } catch {
      return null;
    }
  }

  /** Thaw what freeze froze (guest-fsfreeze-thaw); false when the agent could not be told (the caller says so). */
  async thaw(row: InstanceRow, timeoutMs = CALL_TIMEOUT_MS): Promise<boolean> {
    try {
      await this.clientOf(row).call('guest-fsfreeze-thaw', undefined, timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  /** Ask the guest's agent to power the guest off (a stop whose ACPI request was ignored); resolves once it is asked. */
  async shutdown(row: InstanceRow, timeoutMs = CALL_TIMEOUT_MS): Promise<void> {
    // guest-shutdown answers nothing when it works: the guest goes down (or an error comes, read by the next call)
    await this.clientOf(row, true).call('guest-shutdown', { mode: 'powerdown' }, timeoutMs, { reply: false });
  }
}
