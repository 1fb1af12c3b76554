/**
 * A data dir on a small filesystem (a loop-mounted 160 MiB ext4): a disk that cannot fit is refused up front;
 * a guest that fills the filesystem through a thin volume is paused by QEMU and `corral show` says why; with the
 * filesystem full to the last block the daemon still answers, says NO_SPACE for what it cannot write, and goes
 * on; once space is freed, everything works again. The daemon never dies.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConsoleSession, Daemon, SKIP_NO_TINY, installImage } from './harness.js';

function tryMount(): { dir: string; image: string } | string {
  const image = join(mkdtempSync('/tmp/corral-full-img-'), 'fs.img');
  const dir = mkdtempSync('/tmp/corral-full-');
  try {
    execFileSync('truncate', ['-s', '160M', image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', image]);
    execFileSync('mount', ['-o', 'loop', image, dir]);
    return { dir, image };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot loop-mount a small filesystem here: ${(e as Error).message.split('\n')[0]}`;
  }
}

const mounted = SKIP_NO_TINY ? SKIP_NO_TINY : tryMount();
const skip = typeof mounted === 'string' ? mounted : false;
let d: Daemon | null = null;

after(async () => {
  if (d) await d.destroy().catch(() => undefined);
  if (typeof mounted !== 'string') {
    spawnSync('umount', ['-l', mounted.dir]);
    rmSync(mounted.dir, { recursive: true, force: true });
    rmSync(join(mounted.image, '..'), { recursive: true, force: true });
  }
});

test('a full data dir: refused up front, a filling guest paused with the reason, the daemon answers and goes on', { skip, timeout: 300_000 }, async () => {
  if (typeof mounted === 'string') return;
  installImage(mounted.dir);
  // thin disks may promise 4x what is free, so a guest can write past the end of the filesystem
  d = new Daemon(mounted.dir, [], { CORRAL_DISK_RATIO: '4' });
  await d.start();
  const alive = (): void => assert.equal(d!.proc!.exitCode === null && d!.proc!.signalCode === null, true, `the daemon died: ${d!.log.slice(-2000)}`);

  // up front: more than 4x what is free is refused, naming the resource; nothing is made
  const big = await d.api('POST', '/v1/volumes', { name: 'big', size: '2G' });
  assert.equal(big.status, 409, JSON.stringify(big.body));
  assert.equal(big.body.error.code, 'INSUFFICIENT_RESOURCES');
  assert.equal(big.body.error.resource, 'disk');
  assert.match(big.body.error.message, /disk space: volume "big" may take 2 GiB, and the filesystem of .* has [\d.]+ MiB free/);
  assert.equal((await d.api('GET', '/v1/volumes/big')).status, 404);

  // a thin volume larger than what is free, written by the guest until the filesystem is full
  await d.ok('POST', '/v1/volumes', { name: 'fill', size: '256M' }, 201);
  await d.ok('POST', '/v1/instances', { name: 'filler', image: 'tiny', network: 'none' }, 201);
  assert.equal((await d.cli(['disk', 'attach', 'filler', 'fill'])).code, 0);
  await d.ok('POST', '/v1/instances/filler/start', {});
  await d.waitConsole('filler', /corral-tiny ready/, 120_000);
  const c = await ConsoleSession.open(d, 'filler');
  try {
    await c.run("(dd if=/dev/zero bs=1M count=256 2>/dev/null | tr '\\000' '\\252' | dd of=/dev/vdb bs=1M conv=fsync 2>/dev/null &) ; echo started");
  } finally {
    await c.close();
  }
  const paused = await d.waitState('filler', 'paused', 120_000);
  assert.match(paused.lastError, /paused by QEMU: I\/O error writing disk .*: No space left on device \(the filesystem holding it is full/);
  assert.match((await d.cli(['show', 'filler'])).stdout, /No space left on device/);
  alive();

  // full to the last block: the daemon answers reads, refuses disks up front, and says NO_SPACE for a write it cannot make
  spawnSync('dd', ['if=/dev/zero', `of=${join(mounted.dir, 'cache', 'ballast')}`, 'bs=1M'], { stdio: 'ignore' });
  assert.equal((await d.api('GET', '/v1/instances')).status, 200);
  const vol = await d.api('POST', '/v1/volumes', { name: 'more', size: '1M' });
  assert.equal(vol.body.error?.code, 'INSUFFICIENT_RESOURCES', JSON.stringify(vol.body));
  const made = await d.api('POST', '/v1/instances', { name: 'x1', image: 'tiny' });
  assert.ok(['INSUFFICIENT_RESOURCES', 'NO_SPACE'].includes(made.body.error?.code), JSON.stringify(made.body));
  assert.equal((await d.api('GET', '/v1/instances/x1')).status, 404, 'nothing half-made');
  alive();

  // space freed (the ballast, then the guest and its volume): the daemon carries on
  rmSync(join(mounted.dir, 'cache', 'ballast'));
  await d.ok('DELETE', '/v1/instances/filler?force=true');
  await d.ok('DELETE', '/v1/volumes/fill');
  await d.ok('POST', '/v1/volumes', { name: 'after', size: '16M' }, 201);
  alive();
});
