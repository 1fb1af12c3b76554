/**
 * Debian packages for the tiny image: find the current generic kernel package, download it and
 * busybox-static with `apt-get download` into a cache keyed by the package file names, and unpack them with
 * `dpkg-deb -x`. Nothing is ever installed on the host.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CorralError } from '../core/errors.js';
import { run } from '../host/exec.js';

/**
 * The generic kernel, not the smaller cloud one: only the generic build has the emulated devices' drivers
 * (e1000, e1000e, 8139cp/8139too, ahci) that the guest needs to show every device approach.
 */
export const KERNEL_META_PACKAGE = 'linux-image-amd64';

export function toolEnv(): NodeJS.ProcessEnv {
  return { PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`, LANG: 'C', LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive' };
}

/** apt-get's network steps (update, download) may take this long; every other tool 10 minutes. */
const APT_NETWORK_TIMEOUT_MS = 30 * 60_000;

/** Run a tool (argv, no shell, the one command runner); a failure names the tool and its last stderr line that is not an apt warning. */
export async function tool(cmd: string, args: string[], opts: { cwd?: string; maxBuffer?: number; timeoutMs?: number } = {}): Promise<string> {
  const { stdout } = await run(cmd, args, {
    cwd: opts.cwd, env: toolEnv(), maxBuffer: opts.maxBuffer ?? 32 * 1024 * 1024, timeoutMs: opts.timeoutMs ?? 10 * 60_000,
    what: `${cmd} ${args[0] ?? ''}`.trim(),
    errorLine: (stderr) => (stderr.trim().split('\n').filter((l) => l.trim() && !l.startsWith('W:')).pop() ?? '').slice(0, 2000),
  });
  return stdout;
}

function aptListsPresent(): boolean {
  try {
    return readdirSync('/var/lib/apt/lists').some((f) => f.includes('_Packages'));
  } catch {
    return false;
  }
}

/** `apt-get update` when the package lists are empty (a fresh container). */
export async function ensureAptLists(): Promise<boolean> {
  if (aptListsPresent()) return false;
  await tool('apt-get', ['update', '-q'], { timeoutMs: APT_NETWORK_TIMEOUT_MS });
  return true;
}

/** `apt-cache depends linux-image-amd64` -> the one versioned kernel package it depends on. */
export function parseKernelDepends(text: string): string | null {
  const m = /Depends:\s*(linux-image-[0-9][^\s|]*-amd64)(?=\s|$)/m.exec(text);
  return m?.[1] ?? null;
}

export async function resolveKernelPackage(): Promise<string> {
  const pkg = parseKernelDepends(await tool('apt-cache', ['depends', KERNEL_META_PACKAGE]));
  if (!pkg) throw new CorralError('INTERNAL', `apt-cache depends ${KERNEL_META_PACKAGE} names no linux-image-*-amd64 package`);
  return pkg;
}

/** The file name `apt-get download` gives a package: NAME_VERSION_ARCH.deb, ':' written as %3a. */
export function debFileName(show: string): string | null {
  const field = (k: string): string | undefined => new RegExp(`^${k}:\\s*(\\S+)`, 'm').exec(show)?.[1];
  const [p, v, a] = [field('Package'), field('Version'), field('Architecture')];
  return p && v && a ? `${p}_${v.replace(/:/g, '%3a')}_${a}.deb` : null;
}

/**
 * The .deb of each package in `dir`, downloading only those not there yet (the key is the file name, which
 * holds the version: a newer package is a new file). Downloads land in a temporary folder first so that a
 * broken download is never taken for a cached one.
 */
export async function fetchDebs(dir: string, packages: string[], log: (msg: string) => void): Promise<Map<string, string>> {
  mkdirSync(dir, { recursive: true });
  const out = new Map<string, string>();
  const need: string[] = [];
  for (const pkg of packages) {
    const name = debFileName(await tool('apt-cache', ['show', '--no-all-versions', pkg]));
    if (!name) throw new CorralError('INTERNAL', `apt-cache show ${pkg} gave no version`);
    if (existsSync(join(dir, name))) {
      log(`reusing ${name}`);
      out.set(pkg, join(dir, name));
    } else need.push(pkg);
  }
  if (need.length > 0) {
    const tmp = mkdtempSync(join(dir, '.download-'));
    try {
      log(`downloading ${need.join(' ')}`);
      await tool('apt-get', ['download', '-q', ...need], { cwd: tmp, timeoutMs: APT_NETWORK_TIMEOUT_MS });
      for (const pkg of need) {
        const file = readdirSync(tmp).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
        if (!file) throw new CorralError('INTERNAL', `apt-get download ${pkg} produced no .deb`);
        renameSync(join(tmp, file), join(dir, file));
        out.set(pkg, join(dir, file));
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return out;
}

/** `dpkg-deb -x` a package once into root/<file name>/; later calls reuse the tree. */
export async function unpackDeb(deb: string, root: string): Promise<string> {
  const base = deb.slice(deb.lastIndexOf('/') + 1).replace(/\.deb$/, '');
  const dest = join(root, base);
  if (existsSync(dest)) return dest;
  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(join(root, '.unpack-'));
  try {
    await tool('dpkg-deb', ['-x', deb, tmp]);
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return dest;
}

/** Drop cached .debs (cache/debs) and unpacked trees (cache/unpack) other than `keep`; returns what went. */
export function pruneCache(cache: string, keep: string[]): string[] {
  const names = new Set(keep.map((d) => d.slice(d.lastIndexOf('/') + 1)));
  const removed: string[] = [];
  const sweep = (dir: string, nameOf: (entry: string) => string): void => {
    let entries: string[] = [];
    try {
      entries = readdirSync(dir);
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.startsWith('.') || names.has(nameOf(e))) continue;
      rmSync(join(dir, e), { recursive: true, force: true });
      removed.push(e);
    }
  };
  sweep(join(cache, 'debs'), (e) => e);
  sweep(join(cache, 'unpack'), (e) => `${e}.deb`);
  return removed;
}
