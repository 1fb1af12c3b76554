/**
 * Start QEMU detached (its own session, stdio not tied to the daemon) so that it outlives the daemon, and wait
 * until it answers on QMP. A start-up failure carries QEMU's own stderr line.
 *
 * Why not -daemonize: QEMU's seccomp sandbox (spawn=deny, elevateprivileges=deny) forbids the fork and setsid
 * that -daemonize needs, so a daemonized, fully sandboxed QEMU dies with SIGSYS. Spawning it with setsid from
 * the daemon gives the same detachment with the whole sandbox on.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { spawnError } from '../host/exec.js';
import { setprivArgv, type RunAs } from '../host/run-as.js';
import { processStartTicks, stuckThreads } from './proc.js';
import { QmpClient } from './qmp.js';

export const QEMU_BINARY = process.env.CORRAL_QEMU ?? 'qemu-system-x86_64';

/** How a process the daemon started ended, as its parent saw it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Launched {
  pid: number;
  startTicks: number | null;
  qmp: QmpClient;
  /** Resolves when the process ends while this daemon (its parent) lives; never for an adopted one. */
  exit: Promise<ExitStatus>;
}

/** The most telling line of QEMU's stderr (its own "qemu-system-x86_64: ..." error, else the last line). */
export function qemuErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => /^qemu-system-[^:]+:/.test(l));
  return (own[own.length - 1] ?? lines[lines.length - 1] ?? 'QEMU exited without a message').slice(0, 2000);
}

function readStderr(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export async function launchQemu(
  argv: string[],
  files: { qmp: string; stderr: string },
  timeoutMs = 30_000,
  binary = QEMU_BINARY,
  runAs?: RunAs,
  memlock?: number,
  passFds: number[] = [],
): Promise<Launched> {
  return launchDetached(binary, argv, files, { timeoutMs, what: 'QEMU', errorLine: qemuErrorLine, runAs, memlock, passFds });
}

/** a launch whose QMP connection is not greeted within this dials again (QmpConnectOptions.redialMs says why) */
const GREETING_REDIAL_MS = 4000;

export interface DetachedOptions {
  timeoutMs: number;
  /** how messages name the program: "QEMU", "qemu-storage-daemon" */
  what: string;
  /** the telling line of its stderr */
  errorLine: (stderr: string) => string;
  /** file mode creation mask for the child (the sockets it makes), e.g. 0o177 for 0600 sockets */
  umask?: number;
  /** the unprivileged user the child runs as (through setpriv, which execs it: the pid is the program's) */
  runAs?: RunAs;
  /** RLIMIT_MEMLOCK for the child (with runAs): the guest memory VFIO pins */
  memlock?: number;
  /**
   * descriptors the child gets as fd 3, 4 ...; they are closed here once it is spawned (whether or not it starts
   * well), so that the child holds the only copies (the console log pipe's write end: the keeper sees EOF when
   * QEMU exits)
   */
  passFds?: number[];
}

/**
 * Spawn a QEMU program in its own session (stdin/stdout on /dev/null, stderr to a file, `passFds` from fd 3 on) and wait until its
 * QMP monitor greets; if it exits first, or does not greet in time (it is then killed), the failure is
 * QEMU_FAILED carrying its own stderr line.
 */
export async function launchDetached(binary: string, argv: string[], files: { qmp: string; stderr: string }, o: DetachedOptions): Promise<Launched> {
  const errFd = openSync(files.stderr, 'w', 0o600);
  let child;
  const [bin, args] = o.runAs ? setprivArgv(o.runAs, binary, argv, o.memlock === undefined ? {} : { memlock: o.memlock }) : [binary, argv];
  const oldMask = o.umask === undefined ? undefined : process.umask(o.umask);
  try {
    child = spawn(bin, args, {
      stdio: ['ignore', 'ignore', errFd, ...(o.passFds ?? [])],
      detached: true,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
    });
  } finally {
    if (oldMask !== undefined) process.umask(oldMask);
    for (const fd of [errFd, ...(o.passFds ?? [])]) closeSync(fd);
  }
  child.unref();
  const exit = new Promise<ExitStatus>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const exited = new Promise<never>((_, reject) => {
    child.once('error', (err) => reject(spawnError(bin, err, { code: 'QEMU_FAILED' })));
    child.once('exit', (code, signal) => {
      const line = o.errorLine(readStderr(files.stderr));
      reject(new CorralError('QEMU_FAILED', signal ? `${o.what} was killed by ${signal} while starting: ${line}` : line, { exitCode: code, signal }));
    });
  });
  exited.catch(() => undefined);
  try {
    // QMP greets only once the program has finished initialising and entered its main loop.
    const qmp = await Promise.race([QmpClient.connect(files.qmp, { timeoutMs: o.timeoutMs, retry: true, redialMs: GREETING_REDIAL_MS }), exited]);
    if (child.exitCode !== null || child.signalCode !== null) {
      qmp.close();
      await exited;
    }
    const pid = child.pid!;
    return { pid, startTicks: processStartTicks(pid), qmp, exit };
  } catch (e) {
    const running = child.exitCode === null && child.signalCode === null;
    // where a program that runs but does not answer is stuck (seen in CI, never reproduced): before it is killed
    const stuck = running && !(e instanceof CorralError) && child.pid ? stuckThreads(child.pid) : '';
    if (running) child.kill('SIGKILL');
    if (e instanceof CorralError) throw e;
    const stderr = readStderr(files.stderr);
    const line = stderr.trim() === '' ? 'empty' : o.errorLine(stderr);
    const where = stuck ? `; its QMP socket ${existsSync(files.qmp) ? 'exists' : 'is missing'}; threads: ${stuck}` : '';
    throw new CorralError('QEMU_FAILED', `${o.what} did not answer on QMP: ${(e as Error).message}${line ? `; stderr: ${line}` : ''}${where}`);
  }
}
