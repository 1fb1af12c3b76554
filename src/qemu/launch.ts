/** Start a detached QEMU (-daemonize) and return its pid; a failure carries QEMU's own stderr line. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { processStartTicks } from './proc.js';

export const QEMU_BINARY = process.env.CORRAL_QEMU ?? 'qemu-system-x86_64';

export interface Launched {
  pid: number;
  startTicks: number | null;
}

/** The most telling line of QEMU's stderr (its own "qemu-system-x86_64: ..." error, else the last line). */
export function qemuErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => /^qemu-system-[^:]+:/.test(l));
  return (own[own.length - 1] ?? lines[lines.length - 1] ?? 'QEMU exited without a message').slice(0, 2000);
}

export function launchQemu(argv: string[], pidfile: string, timeoutMs = 30_000, binary = QEMU_BINARY): Promise<Launched> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, argv, {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new CorralError('QEMU_FAILED', `QEMU did not finish starting within ${timeoutMs} ms`, { stderr: qemuErrorLine(stderr) }));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new CorralError('QEMU_FAILED', `cannot run ${binary}: ${err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new CorralError('QEMU_FAILED', qemuErrorLine(stderr), { exitCode: code, signal }));
        return;
      }
      let pid: number;
      try {
        pid = Number(readFileSync(pidfile, 'utf8').trim());
      } catch (e) {
        reject(new CorralError('QEMU_FAILED', `QEMU started but wrote no pidfile: ${(e as Error).message}`));
        return;
      }
      if (!Number.isInteger(pid) || pid <= 0) {
        reject(new CorralError('QEMU_FAILED', 'QEMU wrote an unreadable pidfile'));
        return;
      }
      resolve({ pid, startTicks: processStartTicks(pid) });
    });
  });
}
