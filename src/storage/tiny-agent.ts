/**
 * The tiny image's guest agent: the host's own qemu-guest-agent (Debian's qemu-ga, the same QEMU release as the
 * host's QEMU) copied into the root filesystem with the shared libraries and the dynamic loader `ldd` names, at the
 * paths `ldd` names them (the loader looks there: /lib/x86_64-linux-gnu is in its built-in search path). The guest
 * starts it from /etc/rc on the virtio-serial port named org.qemu.guest_agent.0 (assets/tiny/rc).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CorralError } from '../core/errors.js';
import { missingTool } from '../host/exec.js';
import { tool } from './tiny-debs.js';

/** Where Debian (and others) install qemu-ga; CORRAL_QEMU_GA names another. */
export const QEMU_GA_PATHS = ['/usr/sbin/qemu-ga', '/usr/bin/qemu-ga'];
/** Where the guest finds it. */
export const GUEST_QEMU_GA = '/usr/sbin/qemu-ga';

/** The host's qemu-ga: MISSING_TOOL (package qemu-guest-agent) when it is not installed. */
export function findQemuGa(env: NodeJS.ProcessEnv = process.env): string {
  const given = env.CORRAL_QEMU_GA;
  const found = given ? (existsSync(given) ? given : undefined) : QEMU_GA_PATHS.find((p) => existsSync(p));
  if (!found) throw missingTool(given ?? 'qemu-ga', { why: 'the tiny image ships the host\'s qemu-guest-agent' });
  return found;
}

/**
 * The files a program needs from `ldd PROGRAM`'s output: each library it resolved (`name => /path (0x...)`) and the
 * dynamic loader (`/lib64/ld-linux-x86-64.so.2 (0x...)`); the vDSO has no file. A library ldd did not find is an error.
 */
export function parseLdd(text: string): string[] {
  const files: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('linux-vdso') || line.startsWith('linux-gate')) continue;
    if (/=>\s*not found/.test(line)) throw new CorralError('INTERNAL', `the guest agent needs a library the host lacks: ${line}`);
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (m?.[1] && !files.includes(m[1])) files.push(m[1]);
  }
  if (files.length === 0) throw new CorralError('INTERNAL', `ldd named no library: ${text.trim().slice(0, 200) || 'no output'}`);
  return files;
}

function copyInto(root: string, hostPath: string, guestPath = hostPath, mode = 0o755): void {
  const to = join(root, guestPath);
  mkdirSync(dirname(to), { recursive: true });
  writeFileSync(to, readFileSync(hostPath)); // the file a symlink names, under the name ldd gave
  chmodSync(to, mode);
}

/** Copy qemu-ga and what it loads into the root filesystem at `root`; returns the host's qemu-ga and the libraries. */
export async function installGuestAgent(root: string): Promise<{ binary: string; libraries: string[] }> {
  const binary = findQemuGa();
  const libraries = parseLdd(await tool('ldd', [binary]));
  copyInto(root, binary, GUEST_QEMU_GA);
  for (const lib of libraries) copyInto(root, lib);
  return { binary, libraries };
}
