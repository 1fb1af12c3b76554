/**
 * The one way Corral runs a host command and waits for it: argv only (never a shell), a plain environment,
 * a time limit, and one mapping of failures to coded errors:
 * - the program is not there (ENOENT): MISSING_TOOL, naming it and the Debian package that provides it;
 * - it ran past timeoutMs: TIMEOUT (it is killed with SIGKILL);
 * - it exited non-zero or was killed by a signal: the caller's code (default COMMAND_FAILED), the message
 *   naming the command and carrying the telling line of its stderr.
 * Every error's details hold `command` and `stderr` (that line), and `exitCode`/`signal` when it ran.
 * Children that stream or outlive the call (QEMU, dnsmasq, qemu-img convert) keep their own spawn but turn a
 * spawn error into an error with spawnError(), so a missing program reads the same everywhere.
 * Here in src/host because it imports only src/core and everything above may import it without a cycle.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { CorralError, type ErrorCode } from '../core/errors.js';

/** A plain environment for host tools: PATH, and the C locale so their messages can be matched. */
export const plainEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' });

/** The Debian package of each program Corral runs, for the "not installed" message. */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  nft: 'nftables',
  dnsmasq: 'dnsmasq-base',
  'qemu-img': 'qemu-utils',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-storage-daemon': 'qemu-system-common',
  prlimit: 'util-linux',
  taskset: 'util-linux',
  getconf: 'libc-bin',
  getent: 'libc-bin',
  groupadd: 'passwd',
  useradd: 'passwd',
  setpriv: 'util-linux',
  mkfifo: 'coreutils',
  perl: 'perl-base',
  xz: 'xz-utils',
  zstd: 'zstd',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'dpkg-deb': 'dpkg',
  'mkfs.ext4': 'e2fsprogs',
  busybox: 'busybox-static',
  openssl: 'openssl',
  ldd: 'libc-bin',
  'qemu-ga': 'qemu-guest-agent',
  xorriso: 'xorriso',
};

export interface RunOptions {
  /** kill the command (SIGKILL) and fail with TIMEOUT after this long; 0 means no limit */
  timeoutMs: number;
  /** written to its stdin (stdin is closed either way) */
  input?: string;
  /** its environment; plainEnv() when not given */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** the most stdout or stderr kept (16 MiB when not given); more fails the command */
  maxBuffer?: number;
  /** the code of a non-zero exit or a signal (default COMMAND_FAILED) */
  code?: ErrorCode;
  /** what the messages call the command (default its command line) */
  what?: string;
  /** the telling line of its stderr (default: its last non-empty lines, see stderrLine) */
  errorLine?: (stderr: string) => string;
}

export interface RunResult { stdout: string; stderr: string }

/** A command line for messages: arguments with spaces or quotes are quoted. */
export function commandLine(bin: string, args: readonly string[]): string {
  return [bin, ...args].map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** A tool's message: its stderr's last non-empty lines (at most 3), or the fallback. */
export function stderrLine(stderr: string, fallback: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.slice(-3).join('; ') || fallback).slice(0, 2000);
}

/** MISSING_TOOL for a program that is not installed. */
export function missingTool(bin: string, details: Record<string, unknown> = {}): CorralError {
  const name = basename(bin);
  const pkg = TOOL_PACKAGES[name];
  return new CorralError('MISSING_TOOL',
    `cannot run ${bin}: not installed (${pkg ? `Debian package ${pkg}` : 'not found in PATH'})`,
    { ...details, tool: name, ...(pkg ? { package: pkg } : {}) });
}

/** The error of a child that could not be started (spawn's 'error' event, or execFile's error before it ran). */
export function spawnError(bin: string, err: NodeJS.ErrnoException, opts: { cwd?: string; code?: ErrorCode; command?: string } = {}): CorralError {
  const command = opts.command ?? bin;
  if (err.code === 'ENOENT' && opts.cwd !== undefined && !existsSync(opts.cwd)) {
    return new CorralError(opts.code ?? 'COMMAND_FAILED', `cannot run ${bin}: its working directory ${opts.cwd} does not exist`, { command, stderr: '' });
  }
  if (err.code === 'ENOENT') return missingTool(bin, { command, stderr: '' });
  return new CorralError(opts.code ?? 'COMMAND_FAILED', `cannot run ${bin}: ${err.message}`, { command, stderr: '' });
}

interface Raw<T> { stdout: T; stderr: string }

function exec<T extends string | Buffer>(bin: string, args: readonly string[], opts: RunOptions, encoding: 'utf8' | 'buffer'): Promise<Raw<T>> {
  const command = commandLine(bin, args);
  const what = opts.what ?? command;
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, {
      env: opts.env ?? plainEnv(), cwd: opts.cwd, timeout: opts.timeoutMs, killSignal: 'SIGKILL',
      maxBuffer: opts.maxBuffer ?? 16 * 1024 * 1024, encoding,
    }, (err, stdout, stderrRaw) => {
      const stderr = Buffer.isBuffer(stderrRaw) ? stderrRaw.toString('utf8') : stderrRaw;
      if (!err) {
        resolve({ stdout: stdout as T, stderr });
        return;
      }
      const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: unknown };
      if (typeof e.code === 'string' && e.code !== 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
        reject(spawnError(bin, e, { cwd: opts.cwd, code: opts.code, command }));
        return;
      }
      const line = (opts.errorLine ?? ((s: string) => stderrLine(s, '')))(stderr);
      if (e.killed && e.signal === 'SIGKILL' && opts.timeoutMs > 0 && e.code !== 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
        reject(new CorralError('TIMEOUT', `${what} did not finish within ${opts.timeoutMs} ms and was killed${line ? `: ${line}` : ''}`,
          { command, stderr: line, signal: e.signal, timedOut: true }));
        return;
      }
      const why = e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER' ? 'it printed too much' : e.signal ? `killed by ${e.signal}` : `exit status ${String(e.code)}`;
      reject(new CorralError(opts.code ?? 'COMMAND_FAILED', `${what} failed: ${line || why}`,
        { command, stderr: line, exitCode: typeof e.code === 'number' ? e.code : null, signal: e.signal ?? null }));
    });
    child.stdin?.on('error', () => undefined); // a command that exits without reading its input
    child.stdin?.end(opts.input);
  });
}

/** Run `bin args` to its end: its stdout and stderr, or a coded error (see the top of this file). */
export function run(bin: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  return exec<string>(bin, args, opts, 'utf8');
}

/** run(), with stdout as bytes (a decompressor's output). */
export function runBuffer(bin: string, args: readonly string[], opts: RunOptions): Promise<{ stdout: Buffer; stderr: string }> {
  return exec<Buffer>(bin, args, opts, 'buffer');
}
