/**
 * How QEMU should open image files in a directory: O_DIRECT (cache=none; the guest's own page cache is
 * enough, and the host's would double it) where the filesystem allows it (tmpfs does not), and the best AIO
 * engine this QEMU and kernel offer: io_uring, else Linux native AIO (needs O_DIRECT), else the thread pool.
 * Decided by letting QEMU itself open a scratch image each way, once at daemon start.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnError } from '../host/exec.js';
import { giveTo, spawnAs, type RunAs } from '../host/run-as.js';
import type { BlockIo } from './argv-disks.js';
import { QEMU_BINARY } from './launch.js';

const CANDIDATES: BlockIo[] = [
  { direct: true, aio: 'io_uring' },
  { direct: true, aio: 'native' },
  { direct: true, aio: 'threads' },
  { direct: false, aio: 'io_uring' },
  { direct: false, aio: 'threads' },
];

/** Does QEMU open `file` with these options (under the same seccomp sandbox a guest runs in)? No QEMU at all is MISSING_TOOL. */
function opens(file: string, io: BlockIo, binary: string, timeoutMs: number, runAs?: RunAs): Promise<boolean> {
  const blockdev = JSON.stringify({ driver: 'file', 'node-name': 'probe', filename: file, aio: io.aio, cache: { direct: io.direct } });
  return new Promise((resolve, reject) => {
    const p = spawnAs(runAs, binary, [
      '-machine', 'none', '-nodefaults', '-display', 'none', '-S',
      '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
      '-blockdev', blockdev, '-qmp', 'stdio',
    ], { stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"QMP"') && !out.includes('"quit"')) {
        out += '"quit"';
        p.stdin!.end('{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n');
      }
    });
    p.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') reject(spawnError(binary, err, { code: 'QEMU_FAILED' }));
      else resolve(false);
    });
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 && out.includes('"QMP"'));
    });
  });
}

/** Probe as `runAs` (QEMU's user: the file is given to it) or as the daemon's own user. */
export async function probeBlockIo(dir: string, binary = QEMU_BINARY, timeoutMs = 10_000, runAs?: RunAs): Promise<BlockIo & { reason: string }> {
  const file = join(dir, `.block-io-probe-${process.pid}`);
  writeFileSync(file, Buffer.alloc(64 * 1024));
  if (runAs) giveTo(runAs, file);
  try {
    for (const io of CANDIDATES) {
      if (await opens(file, io, binary, timeoutMs, runAs)) {
        return { ...io, reason: `QEMU opens images in ${dir} with ${io.direct ? 'O_DIRECT' : 'the page cache (no O_DIRECT here)'} and ${io.aio} AIO` };
      }
    }
    return { direct: false, aio: 'threads', reason: `QEMU could not open a test image in ${dir} in any mode; using the defaults` };
  } finally {
    rmSync(file, { force: true });
  }
}
