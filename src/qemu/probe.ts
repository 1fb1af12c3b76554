/**
 * What the installed QEMU can do, and which accelerator really works. /dev/kvm existing proves nothing:
 * on some hosts KVM_CREATE_VM succeeds but a 64-bit guest hangs, so the probe boots a tiny guest under
 * KVM with a time limit and falls back to TCG, saying why.
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Accelerator } from '../core/spec.js';
import { run, spawnError } from '../host/exec.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { spawnAs, type RunAs } from '../host/run-as.js';
import { QEMU_BINARY, qemuErrorLine } from './launch.js';

export interface QemuCapabilities {
  binary: string;
  version: string;
  machines: string[];
  devices: string[];
}

export interface AccelDecision {
  accel: Accelerator;
  reason: string;
  /** true when the choice was forced by configuration rather than probed */
  forced: boolean;
  /** true when KVM could not be tested yet (no probe kernel): decide again later */
  provisional?: boolean;
  probedAt: string;
  probeMs: number;
}

export async function probeCapabilities(binary = QEMU_BINARY): Promise<QemuCapabilities> {
  const opts = { timeoutMs: 30_000, code: 'QEMU_FAILED' } as const;
  const [ver, mach, dev] = await Promise.all([
    run(binary, ['--version'], opts),
    run(binary, ['-machine', 'help'], opts),
    run(binary, ['-device', 'help'], { ...opts, maxBuffer: 4 * 1024 * 1024 }),
  ]);
  const version = /version\s+(\S+)/.exec(ver.stdout)?.[1] ?? 'unknown';
  const machines = mach.stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
  const devices = [...dev.stdout.matchAll(/^name "([^"]+)"/gm)].map((m) => m[1]!);
  return { binary, version, machines, devices };
}

export interface ProbeKernel {
  kernel: string;
  initrd: string;
  /** the image's base command line; corral.probe=1 is added */
  cmdline?: string;
}

/** Boot the tiny kernel with corral.probe=1 under KVM; its init prints "corral-probe ok" and powers off. */
export function bootProbe(accel: Accelerator, k: ProbeKernel, timeoutMs: number, binary = QEMU_BINARY, runAs?: RunAs): Promise<{ ok: boolean; why: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawnAs(runAs, binary, [
      '-nodefaults', '-no-user-config', '-machine', `pc,accel=${accel}`, '-cpu', accel === 'kvm' ? 'host' : 'max', '-m', '128M',
      '-display', 'none', '-serial', 'stdio', '-no-reboot', '-kernel', k.kernel, '-initrd', k.initrd,
      '-append', `${k.cmdline ?? 'console=ttyS0 quiet panic=-1'} corral.probe=1`,
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' } });
    let out = '';
    let err = '';
    let done = false;
    const finish = (ok: boolean, why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve({ ok, why, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false, `a test guest under ${accel} did not finish booting within ${timeoutMs} ms (the guest hangs)`), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes('corral-probe ok')) finish(true, `a test guest booted under ${accel} in ${Date.now() - t0} ms`);
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
    child.on('error', (e) => finish(false, spawnError(binary, e).message));
    child.on('close', () => finish(false, err.trim() ? qemuErrorLine(err) : `the test guest under ${accel} exited before it was ready`));
  });
}

/** This boot of the host (caches of probes hold only for it). */
export function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/**
 * Decide the accelerator. `force` ('kvm'|'tcg') skips the probe. The result is cached in cacheFile, keyed by
 * the host boot, the QEMU version and the probe kernel, so the (up to timeoutMs) probe runs once per boot.
 */
export async function decideAccelerator(opts: {
  force?: Accelerator;
  kernel: ProbeKernel | null;
  qemuVersion: string;
  cacheFile: string;
  timeoutMs?: number;
  devKvm?: string;
  /** the user guests' QEMUs run as: the probe runs as it too, so KVM is tried with that user's access */
  runAs?: RunAs;
}): Promise<AccelDecision> {
  const now = new Date().toISOString();
  if (opts.force) return { accel: opts.force, reason: `forced by configuration (CORRAL_ACCEL=${opts.force})`, forced: true, probedAt: now, probeMs: 0 };
  const devKvm = opts.devKvm ?? '/dev/kvm';
  if (!existsSync(devKvm)) return { accel: 'tcg', reason: `${devKvm} does not exist: no hardware virtualization, using TCG`, forced: false, probedAt: now, probeMs: 0 };
  try {
    accessSync(devKvm, constants.R_OK | constants.W_OK);
  } catch {
    return { accel: 'tcg', reason: `${devKvm} is not accessible to this user, using TCG`, forced: false, probedAt: now, probeMs: 0 };
  }
  if (!opts.kernel) return { accel: 'tcg', reason: 'KVM is present but unverified: the tiny image (its kernel boots the probe) is not built yet; using TCG', forced: false, provisional: true, probedAt: now, probeMs: 0 };
  const kernelHash = createHash('sha256').update(readFileSync(opts.kernel.kernel)).digest('hex').slice(0, 16);
  const key = `${bootId()} ${opts.qemuVersion} ${kernelHash}`;
  try {
    const cached = JSON.parse(readFileSync(opts.cacheFile, 'utf8')) as { key: string; decision: AccelDecision };
    if (cached.key === key) return cached.decision;
  } catch {
    /* no cache yet */
  }
  const r = await bootProbe('kvm', opts.kernel, opts.timeoutMs ?? 8000, QEMU_BINARY, opts.runAs);
  const decision: AccelDecision = r.ok
    ? { accel: 'kvm', reason: r.why, forced: false, probedAt: now, probeMs: r.ms }
    : { accel: 'tcg', reason: `KVM does not work here: ${r.why}; using TCG`, forced: false, probedAt: now, probeMs: r.ms };
  mkdirSync(dirname(opts.cacheFile), { recursive: true });
  writeJsonAtomic(opts.cacheFile, { key, decision });
  return decision;
}
