/**
 * qemu-img wrappers. argv only (execFile/spawn, never a shell), the format always given (`-f`, `-F`,
 * `-O`): never probe. Paths are made absolute so that a file named `json:{...}` or `nbd:...` can never be
 * read by qemu-img as a protocol or an options string. Failures become CorralError with qemu-img's own line.
 */
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { CorralError } from '../core/errors.js';
import { missingTool, plainEnv, run, spawnError, type RunResult } from '../host/exec.js';

export const QEMU_IMG = 'qemu-img';
export type ImgFormat = 'qcow2' | 'raw';

/** The subset of `qemu-img info --output=json` that Corral reads. */
export interface ImgInfo {
  'virtual-size': number;
  filename: string;
  format: string;
  'actual-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'format-specific'?: { type: string; data?: Record<string, unknown> };
  [key: string]: unknown;
}

/** Limits for inspecting untrusted images: 1 GiB of address space and 30 s of CPU (util-linux prlimit). */
export const INSPECT_LIMITS = { addressSpace: 1024 * 1024 * 1024, cpuSeconds: 30, timeoutMs: 60_000 };

/** The time limit of qemu-img create and resize (metadata only: seconds even on slow storage). */
export const IMG_TIMEOUT_MS = 120_000;

/** qemu-img's own error line: the last `qemu-img: ...` line of stderr that is not a warning, or the last line. */
export function qemuImgErrorLine(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => l.startsWith('qemu-img:') && !l.startsWith('qemu-img: warning:'));
  return (own[own.length - 1] ?? lines[lines.length - 1] ?? 'qemu-img failed without a message').slice(0, 2000);
}

/**
 * Run qemu-img through the one command runner; failures are `code` with qemu-img's own line. Under the
 * inspection limits (prlimit), qemu-img stopped by a signal or the time limit means the image took too
 * much: INVALID_IMAGE.
 */
async function runImg(argv: string[], opts: { timeoutMs: number; limited?: boolean; what: string; code: 'INVALID_IMAGE' | 'QEMU_FAILED' }): Promise<RunResult> {
  const [bin, args] = opts.limited
    ? ['prlimit', [`--as=${INSPECT_LIMITS.addressSpace}`, `--cpu=${INSPECT_LIMITS.cpuSeconds}`, '--', QEMU_IMG, ...argv]]
    : [QEMU_IMG, argv];
  try {
    return await run(bin, args, { timeoutMs: opts.timeoutMs, what: opts.what, code: opts.code, errorLine: qemuImgErrorLine });
  } catch (e) {
    if (!(e instanceof CorralError) || !opts.limited) throw e;
    if (e.details.exitCode === 127 && /failed to execute/.test(String(e.details.stderr))) throw missingTool(QEMU_IMG, { command: e.details.command });
    if (e.code === 'TIMEOUT' || e.details.signal) {
      throw new CorralError('INVALID_IMAGE', `${opts.what}: qemu-img was stopped (${String(e.details.signal ?? 'timeout')}): the image took too long or too much memory to read`, { reason: 'resource limit' });
    }
    throw e;
  }
}

/**
 * `qemu-img info --output=json -f FORMAT --force-share PATH` under resource limits. The format is the one
 * the caller declares; a file that is not of that format makes qemu-img fail -> INVALID_IMAGE.
 */
export async function imgInfo(path: string, format: ImgFormat): Promise<ImgInfo> {
  const abs = resolve(path);
  const { stdout } = await runImg(['info', '--output=json', '-f', format, '--force-share', abs], { limited: true, timeoutMs: INSPECT_LIMITS.timeoutMs, what: 'qemu-img info', code: 'INVALID_IMAGE' });
  return parseInfo(stdout);
}

function parseInfo(stdout: string): ImgInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new CorralError('INVALID_IMAGE', 'qemu-img info printed something that is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || typeof (parsed as ImgInfo)['virtual-size'] !== 'number') {
    throw new CorralError('INVALID_IMAGE', 'qemu-img info gave no virtual size');
  }
  return parsed as ImgInfo;
}

/** `qemu-img create -f qcow2 -F FMT -b BACKING PATH [SIZE]`: a copy-on-write overlay over a base image. */
export async function createOverlay(path: string, backingPath: string, backingFormat: ImgFormat, sizeBytes: number | null): Promise<void> {
  const argv = ['create', '-q', '-f', 'qcow2', '-F', backingFormat, '-b', resolve(backingPath), resolve(path)];
  if (sizeBytes !== null) argv.push(String(sizeBytes));
  await runImg(argv, { timeoutMs: IMG_TIMEOUT_MS, what: 'qemu-img create', code: 'QEMU_FAILED' });
}

/**
 * Point a qcow2 image at another backing file, or at none, without reading or writing data (`qemu-img rebase -u`:
 * the header only). For a layer whose backing file moves (an archive's root disk kept whole: none in the archive,
 * this host's image on import); its data reads right only over the same image.
 */
export async function rebaseUnsafe(path: string, backing: { path: string; format: ImgFormat } | null): Promise<void> {
  const to = backing ? ['-F', backing.format, '-b', resolve(backing.path)] : ['-b', ''];
  await runImg(['rebase', '-q', '-u', '-f', 'qcow2', ...to, resolve(path)], { timeoutMs: IMG_TIMEOUT_MS, what: 'qemu-img rebase', code: 'QEMU_FAILED' });
}

/** Grow (or, with shrink, cut) an image to sizeBytes. */
export async function resize(path: string, format: ImgFormat, sizeBytes: number, opts: { shrink?: boolean } = {}): Promise<void> {
  const argv = ['resize', '-q', '-f', format, ...(opts.shrink ? ['--shrink'] : []), resolve(path), String(sizeBytes)];
  await runImg(argv, { timeoutMs: IMG_TIMEOUT_MS, what: 'qemu-img resize', code: 'QEMU_FAILED' });
}

/**
 * How an untrusted image is named to qemu-img: the file by its already-open descriptor (`/proc/PID/fd/N`, which
 * reopens the very inode that was checked, whatever the path now points to) and `"backing": null`, so that
 * nothing the image names is ever opened. A `json:` name made here, never taken from a user. Pure.
 */
export function untrustedSource(fdPath: string, format: ImgFormat): string {
  if (!/^\/proc\/\d+\/fd\/\d+$/.test(fdPath)) throw new CorralError('INTERNAL', `an untrusted image is read through its open descriptor, not ${fdPath}`);
  const opts = format === 'qcow2' ? { driver: 'qcow2', backing: null, file: { driver: 'file', filename: fdPath } } : { driver: 'raw', file: { driver: 'file', filename: fdPath } };
  return `json:${JSON.stringify(opts)}`;
}

/** `qemu-img info` of an untrusted image (see untrustedSource), under the inspection limits. */
export async function untrustedInfo(fdPath: string, format: ImgFormat): Promise<ImgInfo> {
  const { stdout } = await runImg(['info', '--output=json', '--force-share', untrustedSource(fdPath, format)], { limited: true, timeoutMs: INSPECT_LIMITS.timeoutMs, what: 'qemu-img info', code: 'INVALID_IMAGE' });
  return parseInfo(stdout);
}

/** Limits of a conversion: 4 GiB of address space, and 10 min plus 1 s per 20 MiB of source. */
export const CONVERT_LIMITS = { addressSpace: 4 * 1024 ** 3, baseMs: 600_000, bytesPerSecond: 20 * 1024 ** 2 };

export function convertTimeoutMs(sourceBytes: number): number {
  return CONVERT_LIMITS.baseMs + Math.ceil(Math.max(0, sourceBytes) / CONVERT_LIMITS.bytesPerSecond) * 1000;
}

export interface ConvertOptions {
  onPercent?: (percent: number) => void;
  /** the source is untrusted: `src` is its open descriptor's /proc path (see untrustedSource) */
  untrusted?: boolean;
  /** killed (SIGKILL) and TIMEOUT past this (default: convertTimeoutMs of the source's size) */
  timeoutMs?: number;
  /** compress the qcow2 output (`-c`): an archive's disk */
  compress?: boolean;
  /** write only what differs from this base, which the output names as its backing file (`-B`, `-F`) */
  backing?: { path: string; format: ImgFormat };
}

/**
 * `qemu-img convert -p` from SRC (format given, or the untrusted source's json: name) to a standalone DST (unless
 * opts.backing names its base), under an address-space limit (prlimit) and a time limit; progress 0..100.
 */
export function convert(src: string, srcFormat: ImgFormat, dst: string, dstFormat: ImgFormat, opts: ConvertOptions = {}): Promise<void> {
  const from = opts.untrusted ? [untrustedSource(src, srcFormat)] : ['-f', srcFormat, resolve(src)];
  const out = [...(opts.compress ? ['-c'] : []), ...(opts.backing ? ['-B', resolve(opts.backing.path), '-F', opts.backing.format] : [])];
  const argv = [`--as=${CONVERT_LIMITS.addressSpace}`, '--', QEMU_IMG, 'convert', '-p', ...from, '-O', dstFormat, ...out, resolve(dst)];
  let size = 0;
  try {
    size = statSync(src).size;
  } catch {
    /* the time limit's base is enough */
  }
  const timeoutMs = opts.timeoutMs ?? convertTimeoutMs(size);
  return new Promise((resolveP, reject) => {
    const child = spawn('prlimit', argv, { stdio: ['ignore', 'pipe', 'pipe'], env: plainEnv() });
    let stderr = '';
    let last = -1;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      for (const m of d.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)) {
        const p = Math.floor(Number(m[1]));
        if (p !== last) {
          last = p;
          opts.onPercent?.(p);
        }
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { stderr += d; });
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(spawnError('prlimit', err, { code: 'QEMU_FAILED', command: 'qemu-img convert' }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolveP();
      if (timedOut) return reject(new CorralError('TIMEOUT', `qemu-img convert took longer than ${Math.round(timeoutMs / 1000)} s and was stopped`, { command: 'qemu-img convert', timeoutMs }));
      if (code === 127 && /failed to execute/.test(stderr)) return reject(missingTool(QEMU_IMG, { command: 'qemu-img convert' }));
      const why = stderr.trim() ? qemuImgErrorLine(stderr) : `exited with ${code ?? signal}`;
      reject(new CorralError(opts.untrusted && signal ? 'INVALID_IMAGE' : 'QEMU_FAILED', `qemu-img convert failed: ${why}${signal ? ` (killed by ${signal}: the image took too much memory to read)` : ''}`));
    });
  });
}
