/**
 * A live migration's transport, on real guests between two agents in network namespaces (netns-cluster.ts):
 * - TLS on (the cluster's default): the guest moves (same boot, its counter goes on) and what crossed the wire,
 *   captured on the destination's eth0 (wire-capture.ts), is a TLS stream: it starts with a TLS handshake record,
 *   not QEMU's "QEVM", and a marker the guest holds in its memory is nowhere in it; no key file is left on either
 *   host. With `corral cluster set migration-tls off` the same capture sees "QEVM" and the marker: the check can fail.
 * - `--postcopy`: where the destination's QEMU may not use userfaultfd (vm.unprivileged_userfaultfd 0, this
 *   machine's default; Corral's QEMU runs unprivileged) the migration is refused up front with POSTCOPY_UNAVAILABLE,
 *   nothing moved. With the sysctl at 1 (the test sets it and puts the old value back), a guest that keeps dirtying
 *   its memory, with a downtime limit precopy cannot meet, is switched to postcopy after the first pass and arrives.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SKIP_NO_TINY, waitFor } from './harness.js';
import { NetnsCluster, bootId, lastTick, startCounter } from './netns-cluster.js';
import { captureUnavailable, QEVM_HEX, WireCapture, type Capture, type Flow } from './wire-capture.js';

const skip = SKIP_NO_TINY;
const noCapture = skip || captureUnavailable() || false;
const c = new NetnsCluster();
const USERFAULTFD = '/proc/sys/vm/unprivileged_userfaultfd';

before(async () => {
  if (skip) return;
  await c.start(['a1', 'a2']);
  await c.ok(['create', 'm1', '--image', 'tiny', '--memory', '128M', '--pool', 'shared', '--host', 'a1', '--start']);
  await c.host('a1').waitConsole('m1', /corral-tiny ready/);
  await startCounter(c.host('a1'), 'm1');
});

after(async () => {
  await c.stop();
});

/** Every file under `dir` whose name matches. */
function filesUnder(dir: string, re: RegExp): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p, re));
    else if (re.test(e)) out.push(p);
  }
  return out;
}

/**
 * The migration stream among the flows: the largest one that is not an agent's API (port 8444), whole (the kernel
 * dropped nothing and no byte of it is missing: what it lacks is then not on the wire).
 */
function streamOf(cap: Capture): Flow {
  const s = cap.flows.find((f) => f.sport !== 8444 && f.dport !== 8444);
  assert.ok(s, `no migration stream among the flows: ${JSON.stringify(cap.flows)}`);
  assert.ok(s.bytes > 1024 * 1024, `the stream carried the guest's memory: ${JSON.stringify(s)}`);
  assert.equal(cap.drops, 0, 'the capture lost no packet');
  assert.equal(s.holes, 0, 'the stream was captured whole');
  return s;
}

/**
 * Migrate m1 `from` -> `to` while capturing on `to`, a marker in the guest's memory: the result and the capture. The
 * bandwidth is capped so that the capture (a python program on a loaded machine) keeps up.
 */
async function migrateCaptured(from: string, to: string): Promise<{ res: any; cap: Capture; marker: string }> {
  const marker = `corral-wire-probe-${randomBytes(8).toString('hex')}`;
  assert.match(await c.host(from).guest('m1', `echo ${marker} > /tmp/probe; cat /tmp/probe`), new RegExp(marker));
  const cap = await WireCapture.start(c.nsOf(to), marker);
  let got: Capture;
  let res: any;
  try {
    res = await c.ok(['migrate', 'm1', '--to', to, '--bandwidth', '16M/s']);
  } finally {
    got = await cap.stop();
  }
  assert.equal(res.to, to);
  return { res, cap: got, marker };
}

test('TLS by default: the guest moves, the wire carries a TLS stream without its memory, no key is left behind', { skip: noCapture, timeout: 240_000 }, async (t) => {
  assert.deepEqual(await c.ok(['cluster', 'settings']), { migrationTls: true });
  const boot = await bootId(c.host('a1'), 'm1');
  const { res, cap, marker } = await migrateCaptured('a1', 'a2');
  assert.equal(res.tls, true);
  assert.equal(res.postcopy, false);
  const s = streamOf(cap);
  t.diagnostic(`TLS: ${JSON.stringify(res)}; stream ${s.bytes} bytes`);
  assert.ok(s.head.startsWith('1603'), `a TLS handshake record opens the stream, not ${s.head}`);
  assert.ok(!s.head.startsWith(QEVM_HEX), 'no plain QEMU stream');
  assert.deepEqual(cap.flows.filter((f) => f.needle), [], 'the guest\'s memory never crossed in clear');

  const a2 = c.host('a2');
  assert.equal(await bootId(a2, 'm1'), boot, 'the same boot');
  const before = lastTick(await a2.consoleLog('m1'));
  await waitFor(async () => lastTick(await a2.consoleLog('m1')) > before + 1, 30_000, 'the counter to go on on a2');
  assert.match(await a2.guest('m1', 'cat /tmp/probe'), new RegExp(marker));
  assert.deepEqual(c.copiesOf('m1').map((q) => q.host), ['a2']);
  const migrated = (await c.eventsOf('m1')).filter((e) => e.type === 'instance.migrated').at(-1);
  assert.equal(migrated?.data.tls, true);
  for (const h of ['a1', 'a2']) assert.deepEqual(filesUnder(c.host(h).dataDir, /-key\.pem$|^migration-tls$/), [], `no migration key left on ${h}`);
});

test('migration-tls off (a trusted network): the same capture sees QEMU\'s plain stream and the guest\'s memory', { skip: noCapture, timeout: 240_000 }, async (t) => {
  assert.deepEqual(await c.ok(['cluster', 'set', 'migration-tls', 'off']), { migrationTls: false });
  try {
    const { res, cap } = await migrateCaptured('a2', 'a1');
    assert.equal(res.tls, false);
    const s = streamOf(cap);
    t.diagnostic(`plain: ${JSON.stringify(res)}; stream ${s.bytes} bytes`);
    assert.ok(s.head.startsWith(QEVM_HEX), `QEMU's magic opens the stream: ${s.head}`);
    assert.ok(s.needle, 'the marker in the guest\'s memory crossed in clear');
    assert.equal((await c.eventsOf('m1')).filter((e) => e.type === 'instance.migrated').at(-1)?.data.tls, false);
  } finally {
    await c.ok(['cluster', 'set', 'migration-tls', 'on']);
  }
  assert.deepEqual(c.copiesOf('m1').map((q) => q.host), ['a1']);
  const bad = await c.ctl.cli(['cluster', 'set', 'migration-tls', 'maybe']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /migration-tls is "on" or "off"/);
});

/** Run `fn` with vm.unprivileged_userfaultfd at `value`, putting the old one back. */
async function withUserfaultfd<T>(value: '0' | '1', fn: () => Promise<T>): Promise<T> {
  const old = readFileSync(USERFAULTFD, 'utf8').trim();
  writeFileSync(USERFAULTFD, value);
  try {
    return await fn();
  } finally {
    writeFileSync(USERFAULTFD, old);
  }
}

test('--postcopy where the destination\'s unprivileged QEMU may not use userfaultfd: refused up front, nothing moved', { skip, timeout: 120_000 }, async () => {
  const from = (await c.hostOf('m1'))!;
  const to = from === 'a1' ? 'a2' : 'a1';
  const r = await withUserfaultfd('0', () => c.ctl.cli(['migrate', 'm1', '--to', to, '--postcopy']));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, new RegExp(`POSTCOPY_UNAVAILABLE: postcopy is not available: vm.unprivileged_userfaultfd is 0 on host ${to}`));
  assert.equal(await c.hostOf('m1'), from);
  await waitFor(() => c.copiesOf('m1').length === 1, 15_000, 'the refused incoming QEMU gone');
  assert.deepEqual(c.copiesOf('m1').map((q) => q.host), [from]);
  assert.equal((await c.host(to).api('GET', '/v1/instances/m1')).status, 404);
  assert.equal((await c.host(from).ok('GET', '/v1/instances/m1')).state, 'running');
});

test('--postcopy where userfaultfd is allowed: a guest dirtying its memory is switched to postcopy and arrives', { skip, timeout: 240_000 }, async (t) => {
  const from = (await c.hostOf('m1'))!;
  const to = from === 'a1' ? 'a2' : 'a1';
  const src = c.host(from);
  const boot = await bootId(src, 'm1');
  // 16 MiB of random bytes rewritten in RAM without end (reniced, so the console's shell stays quick)
  await src.guest('m1', 'dd if=/dev/urandom of=/dev/shm/src bs=1M count=16 2>/dev/null; sh -c \'while :; do cat /dev/shm/src > /dev/shm/dst; done\' >/dev/null 2>&1 & renice -n 19 -p $! >/dev/null; true', 60_000);
  // 1 ms of downtime: precopy never meets it while the guest dirties; 32 MiB/s makes the first pass last seconds, so
  // the controller sees it active after that pass, whatever the load, and switches
  const res = await withUserfaultfd('1', () => c.ok(['migrate', 'm1', '--to', to, '--postcopy', '--max-downtime', '1', '--bandwidth', '32M/s']));
  t.diagnostic(`postcopy: ${JSON.stringify(res)}`);
  assert.equal(res.postcopy, true, JSON.stringify(res));
  assert.equal(res.tls, true);
  assert.ok(res.passes >= 2, `switched after the first pass: ${JSON.stringify(res)}`);
  const dst = c.host(to);
  assert.equal(await c.hostOf('m1'), to);
  await waitFor(() => c.copiesOf('m1').length === 1, 60_000, 'the source QEMU gone', () => `QEMUs ${JSON.stringify(c.copiesOf('m1'))}; ${from}: ${src.log.slice(-3000)}`);
  assert.deepEqual(c.copiesOf('m1').map((q) => q.host), [to]);
  assert.equal(await bootId(dst, 'm1'), boot, 'the same boot');
  const before = lastTick(await dst.consoleLog('m1'));
  await waitFor(async () => lastTick(await dst.consoleLog('m1')) > before + 1, 30_000, 'the counter to go on');
  const migrated = (await c.eventsOf('m1')).filter((e) => e.type === 'instance.migrated').at(-1);
  assert.equal(migrated?.data.postcopy, true);
});
