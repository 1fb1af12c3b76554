/**
 * Host commands for the network layer: argv arrays through execFile (never a shell), a plain environment, and
 * every failure a NETWORK_FAILED CorralError naming the command line and carrying the tool's own stderr.
 */
import { execFile } from 'node:child_process';
import { CorralError } from '../core/errors.js';

export const ENV = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' });

/** Debian packages that ship the tools, for the "not installed" message. */
const PACKAGES: Record<string, string> = { ip: 'iproute2', nft: 'nftables', dnsmasq: 'dnsmasq-base' };

export interface RunResult { stdout: string; stderr: string }

/** A command line for messages: arguments with spaces or quotes are quoted. */
export function commandLine(bin: string, args: string[]): string {
  return [bin, ...args].map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

/** The failing tool's message: its stderr's last non-empty lines (at most 3), or the exit status. */
export function stderrLine(stderr: string, fallback: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return (lines.slice(-3).join('; ') || fallback).slice(0, 2000);
}

export function run(bin: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const cmd = commandLine(bin, args);
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { env: ENV(), timeout: opts.timeoutMs ?? 30_000, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) {
        resolve({ stdout, stderr });
        return;
      }
      const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: unknown };
      if (e.code === 'ENOENT') {
        reject(new CorralError('NETWORK_FAILED', `cannot run ${bin}: not installed (Debian package ${PACKAGES[bin] ?? bin})`, { command: cmd, stderr: '' }));
        return;
      }
      const why = e.killed || e.signal ? `killed by ${e.signal ?? 'timeout'}` : `exit status ${String(e.code)}`;
      const line = stderrLine(stderr, why);
      reject(new CorralError('NETWORK_FAILED', `${cmd} failed: ${line}`, { command: cmd, stderr: line }));
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** `ip ARGS`. */
export function ip(args: string[]): Promise<RunResult> {
  return run('ip', args);
}

/** `ip -j ARGS` parsed; an empty answer is []. */
export async function ipJson<T = unknown>(args: string[]): Promise<T[]> {
  const { stdout } = await ip(['-j', ...args]);
  const text = stdout.trim();
  if (text === '') return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    throw new CorralError('NETWORK_FAILED', `${commandLine('ip', ['-j', ...args])} printed something that is not JSON`, { command: commandLine('ip', ['-j', ...args]) });
  }
}
