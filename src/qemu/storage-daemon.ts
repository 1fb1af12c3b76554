/**
 * qemu-storage-daemon (qsd) serving one vhost-user-blk disk: its files in the instance's runtime dir, its argv
 * (pure), its launch (detached in its own session, like QEMU), the record that lets a restarted daemon adopt
 * it, the /proc check that trusts a recorded pid, and its stop (QMP quit, then SIGKILL).
 *
 * One qsd per disk: a disk's backend can fail, be hot-plugged and be unplugged on its own, and its cmdline
 * names exactly one image.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, chmodSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CorralError } from '../core/errors.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import type { RunAs } from '../host/run-as.js';
import { diskBlockdev, nodeOf, type BlockIo, type PlanDisk } from './argv-disks.js';
import { launchDetached } from './launch.js';
import { assertSafeOptionPath } from './option-path.js';
import { isAlive, listPids, processStartTicks, readCmdline } from './proc.js';
import { QmpDisconnectedError, type QmpClient } from './qmp.js';

export const QSD_BINARY = process.env.CORRAL_QSD ?? 'qemu-storage-daemon';
/** sockaddr_un.sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

export interface StorageDaemonPaths {
  /** the vhost-user socket QEMU connects to */
  socket: string;
  /** the qsd's own QMP monitor */
  qmp: string;
  pidfile: string;
  stderr: string;
  /** the JSON record (pid, start time) for adoption */
  record: string;
}

/**
 * A disk's qsd files in the runtime dir, named after the volume (`vu-<volume>.*`), or after a hash of it
 * when the name would make a socket path too long for a unix socket.
 */
export function storageDaemonPaths(runDir: string, volume: string): StorageDaemonPaths {
  let key = `vu-${volume}`;
  if (Buffer.byteLength(join(runDir, `${key}.sock`)) > MAX_SOCKET_PATH) key = `vu-h${createHash('sha256').update(volume).digest('hex').slice(0, 12)}`;
  const f = (ext: string): string => join(runDir, `${key}.${ext}`);
  return { socket: f('sock'), qmp: f('qmp'), pidfile: f('pid'), stderr: f('stderr'), record: f('json') };
}

export interface StorageDaemonSpec {
  /** the disk as the launch plan has it (path, format, node name, read-only) */
  disk: PlanDisk;
  paths: StorageDaemonPaths;
  /** request queues; QEMU's vhost-user-blk-pci asks for the same number */
  queues: number;
  /** how the image is opened (O_DIRECT, AIO engine): the same probe as QEMU's, same block layer */
  io: BlockIo;
}

/**
 * The qsd's arguments: the image's file + format nodes (JSON, the same diskBlockdev() QEMU uses), the
 * vhost-user-blk export on the unix socket (JSON), a QMP monitor on its own socket, and a pidfile. Paths in
 * the legacy --chardev/--pidfile syntax are daemon-made and checked.
 */
export function storageDaemonArgv(s: StorageDaemonSpec): string[] {
  const ro = s.disk.readonly ?? false;
  const exp = {
    type: 'vhost-user-blk', id: s.disk.id, 'node-name': nodeOf(s.disk),
    addr: { type: 'unix', path: assertSafeOptionPath(s.paths.socket) },
    writable: !ro, 'num-queues': Math.max(1, s.queues),
  };
  return [
    '--blockdev', JSON.stringify(diskBlockdev(s.disk, s.io)),
    '--export', JSON.stringify(exp),
    '--chardev', `socket,id=qmp0,path=${assertSafeOptionPath(s.paths.qmp)},server=on,wait=off`,
    '--monitor', 'chardev=qmp0',
    '--pidfile', assertSafeOptionPath(s.paths.pidfile),
  ];
}

/** The telling line of a qsd's stderr (its own "qemu-storage-daemon: ..." error, else the last line). */
export function qsdErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => /^qemu-storage-daemon:/.test(l));
  return (own[own.length - 1] ?? lines[lines.length - 1] ?? 'qemu-storage-daemon exited without a message').slice(0, 2000);
}

/** What a restarted daemon needs to find, trust and stop a running qsd. */
export interface StorageDaemonRecord {
  volume: string;
  /** the QEMU device id of the disk (vol-<name>) */
  diskId: string;
  pid: number;
  /** start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart */
  startTicks: number | null;
  socket: string;
  qmp: string;
  pidfile: string;
  stderr: string;
  record: string;
  path: string;
  startedAt: string;
}

export function writeStorageDaemonRecord(r: StorageDaemonRecord): void {
  writeJsonAtomic(r.record, r, 0o600);
}

/** Every qsd record in a runtime dir (unreadable ones are skipped). */
export function readStorageDaemonRecords(runDir: string): StorageDaemonRecord[] {
  let names: string[];
  try {
    names = readdirSync(runDir).filter((n) => /^vu-.*\.json$/.test(n));
  } catch {
    return [];
  }
  const out: StorageDaemonRecord[] = [];
  for (const n of names) {
    try {
      const r = JSON.parse(readFileSync(join(runDir, n), 'utf8')) as StorageDaemonRecord;
      if (typeof r.pid === 'number' && typeof r.socket === 'string' && typeof r.diskId === 'string') out.push(r);
    } catch {
      /* half-written or foreign: ignore */
    }
  }
  return out;
}

/**
 * Trust a pid only if it is a qemu-storage-daemon whose arguments name this socket (which lies in the
 * instance's uuid-named runtime dir) and, when known, started at the same time.
 */
export function isStorageDaemonOf(pid: number, socket: string, startTicks: number | null, proc = '/proc'): boolean {
  const argv = readCmdline(pid, proc);
  if (!argv || argv.length === 0) return false;
  if (!basename(argv[0]!).startsWith('qemu-storage-daemon')) return false;
  if (!argv.some((a) => a.includes(JSON.stringify(socket)))) return false;
  if (startTicks !== null && processStartTicks(pid, proc) !== startTicks) return false;
  return isAlive(pid, proc);
}

/** Every live qsd whose arguments mention `fragment` (a data dir's run/ folder): for the orphan sweep. */
export function findStorageDaemons(fragment: string, proc = '/proc'): Array<{ pid: number; argv: string[] }> {
  const out: Array<{ pid: number; argv: string[] }> = [];
  for (const pid of listPids(proc)) {
    const argv = readCmdline(pid, proc);
    if (!argv || !basename(argv[0] ?? '').startsWith('qemu-storage-daemon')) continue;
    if (argv.some((a) => a.includes(fragment)) && isAlive(pid, proc)) out.push({ pid, argv });
  }
  return out;
}

/** QEMU's image-lock failure: another process (a QEMU, qemu-io, a qsd) has the image open. */
const LOCK_RE = /Failed to get (?:shared )?"[a-z ]+" lock/;

export interface LaunchedStorageDaemon {
  pid: number;
  startTicks: number | null;
  qmp: QmpClient;
}

/**
 * Start a qsd detached, wait until its QMP greets (by then the export's socket exists: options are processed
 * in order), make its sockets 0600. A failure kills it and says why: VOLUME_IN_USE when the image is locked,
 * QEMU_FAILED with the qsd's own stderr line otherwise.
 */
export async function launchStorageDaemon(s: StorageDaemonSpec, volume: string, timeoutMs = 15_000, binary = QSD_BINARY, runAs?: RunAs): Promise<LaunchedStorageDaemon> {
  for (const f of [s.paths.socket, s.paths.qmp, s.paths.pidfile]) rmSync(f, { force: true });
  let launched;
  const launch = () => launchDetached(binary, storageDaemonArgv(s), { qmp: s.paths.qmp, stderr: s.paths.stderr }, {
    timeoutMs, what: 'qemu-storage-daemon', errorLine: qsdErrorLine, umask: 0o177, runAs,
  });
  try {
    try {
      launched = await launch();
    } catch (e) {
      // Seen twice in CI, never here: a qsd that neither answers on QMP nor says why (killed by then). It is tried
      // once more; a qsd that refuses (its stderr says why) is not.
      if (!(e instanceof CorralError) || !/did not answer on QMP/.test(e.message)) throw e;
      for (const f of [s.paths.socket, s.paths.qmp, s.paths.pidfile]) rmSync(f, { force: true });
      launched = await launch();
    }
  } catch (e) {
    const msg = (e as Error).message;
    const lock = LOCK_RE.exec(msg);
    if (lock) {
      throw new CorralError('VOLUME_IN_USE', `volume "${volume}" cannot be served over vhost-user: its image is open in another process (${lock[0]})`, { name: volume, reason: 'image locked' });
    }
    throw new CorralError('QEMU_FAILED', `qemu-storage-daemon for volume "${volume}" failed to start: ${msg}`, { volume, ...(e instanceof CorralError ? e.details : {}) });
  }
  try {
    if (!existsSync(s.paths.socket)) throw new CorralError('QEMU_FAILED', `its vhost-user socket ${s.paths.socket} is missing`);
    chmodSync(s.paths.socket, 0o600);
    chmodSync(s.paths.qmp, 0o600);
  } catch (e) {
    launched.qmp.close();
    await killAndWait(launched.pid, 2000);
    throw new CorralError('QEMU_FAILED', `qemu-storage-daemon for volume "${volume}" failed to start: ${(e as Error).message}`, { volume });
  }
  return launched;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitGone(pid: number, startTicks: number | null, ms: number, proc = '/proc'): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (!isAlive(pid, proc) || (startTicks !== null && processStartTicks(pid, proc) !== startTicks)) return true;
    if (Date.now() > until) return false;
    await sleep(25);
  }
}

async function killAndWait(pid: number, ms: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitGone(pid, null, ms);
}

/**
 * Stop a qsd: QMP `quit` (it flushes and closes the image), else SIGTERM (it quits cleanly on it too), and
 * SIGKILL after `graceMs`; then remove its sockets, pidfile and record. A pid that is no longer this qsd is
 * never signalled. Resolves once the process is gone.
 */
export async function stopStorageDaemon(r: StorageDaemonRecord, qmp: QmpClient | null, graceMs = 3000, proc = '/proc'): Promise<void> {
  if (isStorageDaemonOf(r.pid, r.socket, r.startTicks, proc)) {
    let asked = false;
    if (qmp && !qmp.closed) {
      // it may close the socket before its reply: that counts as asked too
      asked = await qmp.execute('quit', undefined, { timeoutMs: 1000 }).then(() => true, (e: unknown) => e instanceof QmpDisconnectedError);
    }
    if (!asked) {
      try {
        process.kill(r.pid, 'SIGTERM');
      } catch {
        /* gone */
      }
    }
    if (!(await waitGone(r.pid, r.startTicks, graceMs, proc))) {
      try {
        process.kill(r.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await waitGone(r.pid, r.startTicks, 5000, proc);
    }
  }
  qmp?.close();
  removeStorageDaemonFiles(r);
}

/** Remove a qsd's sockets, pidfile and record (and its stderr file unless `keepStderr`, to read why it died). */
export function removeStorageDaemonFiles(r: Pick<StorageDaemonRecord, 'socket' | 'qmp' | 'pidfile' | 'record' | 'stderr'>, keepStderr = false): void {
  for (const f of [r.socket, r.qmp, r.pidfile, r.record]) rmSync(f, { force: true });
  if (!keepStderr) rmSync(r.stderr, { force: true });
}
