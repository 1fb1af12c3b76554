/**
 * Which named CPU models this host's QEMU can run under its accelerator: QMP `query-cpu-definitions` of a QEMU
 * started with `-machine none` and that accelerator (no guest), whose `unavailable-features` is empty for a model the
 * accelerator can give a guest as defined (libvirt probes the same way). Cached per host boot, QEMU binary, version
 * and accelerator, next to the accelerator probe's cache: the answer changes only with those.
 */
import { readFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { CorralError } from '../core/errors.js';
import type { Accel } from '../core/cpu-models.js';
import { plainEnv, spawnError } from '../host/exec.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';
import { spawnAs, type RunAs } from '../host/run-as.js';
import { bootId } from './probe.js';
import { QEMU_BINARY } from './launch.js';

export interface CpuDefinition {
  name: string;
  /** the versioned model an alias stands for (`Haswell-noTSX` -> `Haswell-v2`) */
  aliasOf: string | null;
  /** the features this accelerator cannot give a guest of this model (empty: runnable) */
  unavailable: string[];
  deprecated: boolean;
}

/** The models that are not named models: the host CPU, everything the accelerator offers, the empty base. */
const NOT_NAMED = new Set(['host', 'max', 'base']);

/** query-cpu-definitions' reply as a list of definitions (INTERNAL when it is no list). */
export function parseCpuDefinitions(reply: unknown): CpuDefinition[] {
  if (!Array.isArray(reply)) throw new CorralError('INTERNAL', 'query-cpu-definitions returned no list');
  return reply.flatMap((d: Record<string, unknown>) => (typeof d?.name !== 'string' ? [] : [{
    name: d.name,
    aliasOf: typeof d['alias-of'] === 'string' ? d['alias-of'] : null,
    unavailable: Array.isArray(d['unavailable-features']) ? (d['unavailable-features'] as unknown[]).map(String) : [],
    deprecated: d.deprecated === true,
  }]));
}

/** The named models runnable here (no unavailable feature), sorted. */
export function runnableModels(defs: readonly CpuDefinition[]): string[] {
  return defs.filter((d) => !NOT_NAMED.has(d.name) && d.unavailable.length === 0).map((d) => d.name).sort();
}

/** Ask a QEMU with no guest (`-machine none`) under `accel` for its CPU definitions, over QMP on its stdio. */
export function queryCpuDefinitions(accel: Accel, o: { binary?: string; runAs?: RunAs; timeoutMs?: number } = {}): Promise<CpuDefinition[]> {
  const binary = o.binary ?? QEMU_BINARY;
  const timeoutMs = o.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const child = spawnAs(o.runAs, binary, ['-machine', `none,accel=${accel}`, '-nodefaults', '-no-user-config', '-display', 'none', '-qmp', 'stdio'],
      { stdio: ['pipe', 'pipe', 'pipe'], env: plainEnv() });
    let out = '';
    let err = '';
    let done = false;
    const finish = (e: Error | null, defs?: CpuDefinition[]): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      if (e) reject(e);
      else resolve(defs!);
    };
    const timer = setTimeout(() => finish(new CorralError('TIMEOUT', `QEMU did not list its CPU models within ${timeoutMs} ms`)), timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        let msg: { id?: unknown; return?: unknown; error?: { desc?: string } };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          continue;
        }
        if (msg.id !== 'cpu-definitions') continue;
        if (msg.error) finish(new CorralError('QEMU_FAILED', `query-cpu-definitions under ${accel}: ${msg.error.desc ?? 'failed'}`));
        else {
          try {
            finish(null, parseCpuDefinitions(msg.return));
          } catch (e) {
            finish(e as Error);
          }
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString('utf8'); });
    child.on('error', (e) => finish(spawnError(binary, e)));
    child.on('close', (code) => finish(new CorralError('QEMU_FAILED', `QEMU (-machine none,accel=${accel}) exited (${code}) before listing its CPU models: ${err.trim().split('\n').pop() ?? ''}`)));
    child.stdin!.on('error', () => undefined);
    child.stdin!.write('{"execute":"qmp_capabilities"}\n{"execute":"query-cpu-definitions","id":"cpu-definitions"}\n');
  });
}

/**
 * The named models runnable under `accel`, from the cache when it is for this boot, binary, QEMU version and
 * accelerator, else probed and cached (a cache that cannot be written is only a lost shortcut).
 */
export async function probeCpuModels(o: { accel: Accel; qemuVersion: string; cacheFile: string; binary?: string; runAs?: RunAs }): Promise<string[]> {
  const key = `${bootId()} ${o.binary ?? QEMU_BINARY} ${o.qemuVersion} ${o.accel}`;
  try {
    const cached = JSON.parse(readFileSync(o.cacheFile, 'utf8')) as { key?: string; models?: unknown };
    if (cached.key === key && Array.isArray(cached.models) && cached.models.every((m) => typeof m === 'string')) return cached.models as string[];
  } catch {
    /* no cache yet */
  }
  const models = runnableModels(await queryCpuDefinitions(o.accel, { ...(o.binary ? { binary: o.binary } : {}), ...(o.runAs ? { runAs: o.runAs } : {}) }));
  try {
    mkdirSync(dirname(o.cacheFile), { recursive: true });
    writeJsonAtomic(o.cacheFile, { key, models });
  } catch {
    /* the next start probes again */
  }
  return models;
}
