/**
 * A fence command (`corral controller --fence-command PATH`): a program that makes sure a lost host is off (an
 * IPMI power-off, a PDU outlet, a cloud API's stop) and says so by exiting 0. It is run as a file, without a
 * shell, with CORRAL_FENCE_HOST (the host's name) and CORRAL_FENCE_ADDRESS (its agent's address, https://IP:PORT)
 * in its environment, in a process group of its own: past its timeout the whole group is SIGKILLed (a script's
 * `ipmitool` as well), and the run counts as failed. Anything but exit 0 is a failure: the host is not known to be off.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { CorralError } from '../core/errors.js';
import { tail } from './cluster-events.js';

export const DEFAULT_FENCE_TIMEOUT_MS = 60_000;

/** the most output kept from a run (its end: what it said last) */
const KEEP_OUTPUT = 16 * 1024;

export interface FenceTarget {
  host: string;
  address: string;
}

export interface FenceOutcome {
  ok: boolean;
  /** what happened, in words: "exited 0", "exited with status 1", "timed out after 60000 ms", "cannot be run: ..." */
  reason: string;
  exitCode: number | null;
  durationMs: number;
  /** the end of what it wrote (stdout and stderr together) */
  output: string;
}

/** A fence command as configured: an absolute path to an executable file; INVALID_CONFIG otherwise. */
export function checkFenceCommand(path: string): string {
  if (!isAbsolute(path)) throw new CorralError('INVALID_CONFIG', `--fence-command: "${path}" must be an absolute path (it is run as a file, without a shell)`, { field: 'fenceCommand' });
  try {
    if (!statSync(path).isFile()) throw new Error('not a file');
    accessSync(path, constants.X_OK);
  } catch (e) {
    throw new CorralError('INVALID_CONFIG', `--fence-command: ${path} is not an executable file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, { field: 'fenceCommand' });
  }
  return path;
}

/** CORRAL_FENCE_TIMEOUT_MS, or the default; INVALID_CONFIG when it is not a positive whole number. */
export function fenceTimeoutMs(text = process.env.CORRAL_FENCE_TIMEOUT_MS): number {
  if (text === undefined || text === '') return DEFAULT_FENCE_TIMEOUT_MS;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new CorralError('INVALID_CONFIG', `CORRAL_FENCE_TIMEOUT_MS is a number of milliseconds, not "${text}"`);
  return n;
}

/** Run the fence command for one host; never throws: a failure is an outcome that says why. */
export function runFenceCommand(command: string, target: FenceTarget, timeoutMs = DEFAULT_FENCE_TIMEOUT_MS): Promise<FenceOutcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let done = false;
    const finish = (ok: boolean, reason: string, exitCode: number | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ok, reason, exitCode, durationMs: Date.now() - started, output: tail(output) });
    };
    const keep = (d: Buffer): void => {
      output += d.toString();
      if (output.length > KEEP_OUTPUT) output = output.slice(-KEEP_OUTPUT);
    };
    const child = spawn(command, [], {
      env: { ...process.env, CORRAL_FENCE_HOST: target.host, CORRAL_FENCE_ADDRESS: target.address },
      stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (e: NodeJS.ErrnoException) => finish(false, `cannot be run: ${e.code ?? ''} ${e.message}`.replace(/ {2,}/g, ' '), null));
    // the outcome is its exit; its output is read to the end of the pipes ('close'), though for at most a moment
    // more: a child it left behind holding them does not hold the outcome up
    child.on('exit', (code, signal) => {
      const end = (): void => {
        if (timedOut) finish(false, `timed out after ${timeoutMs} ms (killed)`, null);
        else if (code === 0) finish(true, 'exited 0', 0);
        else if (code !== null) finish(false, `exited with status ${code}`, code);
        else finish(false, `killed by ${signal}`, null);
      };
      child.once('close', end);
      setTimeout(end, 500);
    });
  });
}
