/**
 * Copies and archives through a controller, with the real CLI, two real agents sharing a shared pool, and the tiny
 * guest: a running guest with a marker file is exported through the controller, copied (the copy is in the
 * controller's list at once, on the same host), deleted, and imported through the controller, placed by the
 * cluster and with --target: each import is listed at once on its host, and the first boots with the marker. A
 * flipped byte and a name taken anywhere in the cluster are refused with nothing left on any host or in the list;
 * an instance on the shared pool is exported and imports as a local one.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster, type CliResult } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

const skip = SKIP_NO_TINY;
const TOKEN = `corral-ctl-archive-${process.pid}`;
let pg: TestPostgres;
let shared = '';
let work = '';
let ctl: Controller;
const agents: Record<string, Daemon> = {};

function refused(r: CliResult, what: string): any {
  assert.equal(r.code, 1, `${what} must fail: ${r.stdout}`);
  // (a job's progress lines come first on stderr; its error is the last line)
  return JSON.parse(r.stderr.trim().split('\n').at(-1)!).error;
}

const ok = (args: string[]): Promise<any> => ctl.json(args);
/** name -> host, as the controller lists them */
const listed = async (): Promise<Record<string, string>> => Object.fromEntries((await ok(['list'])).instances.map((i: any) => [i.name, i.host]));
/** the names each agent has on its own socket */
const onHosts = async (): Promise<Record<string, string[]>> => {
  const out: Record<string, string[]> = {};
  for (const [n, a] of Object.entries(agents)) out[n] = (await a.ok('GET', '/v1/instances')).instances.map((i: any) => i.name).sort();
  return out;
};

before(async () => {
  if (skip) return;
  ({ pg, shared } = await initCluster());
  work = mkdtempSync(join(tmpdir(), 'corral-ctl-archives-'));
  ctl = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '4000' });
  await ctl.start();
  for (const name of ['a1', 'a2']) {
    const token = (await ok(['cluster', 'join-token'])).token;
    const a = new Daemon(newDataDir(), ['--join', ctl.url, '--token', token, '--name', name, '--listen', `127.0.0.1:${await freePort()}`, '--shared-pool', shared], { CORRAL_HEARTBEAT_MS: '500' }, { command: 'agent' });
    agents[name] = a;
    await a.start();
  }
  await waitFor(async () => (await ok(['host', 'list'])).filter((h: any) => h.state === 'up' && h.sharedPool === shared).length === 2, 30_000, 'both hosts up with the shared pool');
});

after(async () => {
  for (const a of Object.values(agents)) await a.destroy();
  await ctl?.destroy();
  await pg?.stop();
  if (shared) rmSync(shared, { recursive: true, force: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

test('export, copy, delete and import through the controller: listed at once, placed or on the target, and the import boots with its data', { skip, timeout: 240_000 }, async () => {
  await ok(['create', 'src', '--image', 'tiny', '--memory', '128M', '--host', 'a1', '--start']);
  await agents.a1!.waitConsole('src', /corral-tiny ready/, 120_000);
  await agents.a1!.guest('src', `echo ${TOKEN} > /marker; sync; cat /marker`);
  await ok(['create', 'other', '--image', 'tiny', '--memory', '64M', '--host', 'a2']);

  const archive = join(work, 'src.tar');
  const ex = await ok(['export', 'src', archive]);
  assert.equal(ex.manifest.consistency, 'backup', 'the running guest was read through a backup');
  assert.equal(statSync(archive).size, ex.size);

  // a copy is on its source's host and in the controller's list as soon as the CLI has its answer
  const copy = await ok(['copy', 'src', 'src-copy']);
  assert.deepEqual([copy.name, copy.state, copy.host], ['src-copy', 'stopped', 'a1']);
  assert.equal((await listed())['src-copy'], 'a1');
  const dup = refused(await ctl.cli(['copy', 'src', 'other', '--json']), 'copy over a name taken on a2');
  assert.equal(dup.code, 'ALREADY_EXISTS');
  assert.match(dup.message, /on host a2/);
  assert.deepEqual(await onHosts(), { a1: ['src', 'src-copy'], a2: ['other'] });

  await ok(['delete', 'src', '--force']);
  const imported = await ok(['import', archive]);
  assert.equal(imported.name, 'src');
  const where = imported.host as string;
  assert.ok(where === 'a1' || where === 'a2', `placed on a host: ${where}`);
  assert.equal((await listed()).src, where, 'listed at once, on the host that made it');
  const targeted = await ok(['--target', 'a2', 'import', archive, 'src2']);
  assert.equal(targeted.host, 'a2');
  assert.equal((await listed()).src2, 'a2');
  assert.ok((await onHosts()).a2!.includes('src2'));

  await ok(['start', 'src']);
  await agents[where]!.waitConsole('src', /corral-tiny ready/, 120_000);
  assert.match(await agents[where]!.guest('src', 'cat /marker'), new RegExp(TOKEN), 'the imported guest has the data');

  // the archive of an instance on a2, found there
  const again = await ok(['export', 'src2', join(work, 'src2.tar')]);
  assert.equal(statSync(join(work, 'src2.tar')).size, again.size);
});

test('a flipped byte, a name taken anywhere, or an unknown target: refused, nothing left on the hosts or in the list', { skip, timeout: 120_000 }, async () => {
  const archive = join(work, 'src.tar');
  const bytes = readFileSync(archive);
  bytes[bytes.length - 4096]! ^= 0xff;
  const bad = join(work, 'bad.tar');
  writeFileSync(bad, bytes);
  // a name taken is refused before the archive is read further than its manifest: the head of it is enough (and
  // whole in the socket's buffers when the refusal comes: the CLI may lose an answer that comes while it sends)
  const head = join(work, 'head.tar');
  writeFileSync(head, readFileSync(archive).subarray(0, 64 * 1024));
  const before = await listed();
  const hosts = await onHosts();

  const flipped = refused(await ctl.cli(['import', bad, 'flipped', '--json']), 'a flipped byte');
  assert.equal(flipped.code, 'INVALID_ARCHIVE');
  assert.match(flipped.message, /sha256/);
  const taken = refused(await ctl.cli(['--target', 'a1', 'import', head, 'other', '--json']), 'import over a name on a2');
  assert.equal(taken.code, 'ALREADY_EXISTS');
  assert.match(taken.message, /on host a2/);
  const fromManifest = refused(await ctl.cli(['import', head, '--json']), 'import of src again');
  assert.equal(fromManifest.code, 'ALREADY_EXISTS');
  const nohost = refused(await ctl.cli(['--target', 'a9', 'import', head, 'x9', '--json']), 'unknown target');
  assert.equal(nohost.code, 'HOST_NOT_FOUND');
  assert.deepEqual(await listed(), before);
  assert.deepEqual(await onHosts(), hosts);
});

test('an instance on the shared pool is exported through the controller and imports as a local one; a copy of it is refused', { skip, timeout: 120_000 }, async () => {
  await ok(['create', 'sh1', '--image', 'tiny', '--memory', '64M', '--pool', 'shared', '--host', 'a1']);
  const copy = refused(await ctl.cli(['copy', 'sh1', 'sh1-copy', '--json']), 'copy of a shared-pool instance');
  assert.equal(copy.code, 'INVALID_STATE');
  assert.match(copy.message, /root disk on the shared pool: a copy is made of local root disks only/);
  assert.equal((await listed())['sh1-copy'], undefined);
  const archive = join(work, 'sh1.tar');
  await ok(['export', 'sh1', archive]);
  const local = await ok(['--target', 'a2', 'import', archive, 'sh1-local']);
  assert.equal(local.host, 'a2');
  const spec = (await agents.a2!.ok('GET', '/v1/instances/sh1-local')).spec;
  assert.notEqual(spec?.rootPool, 'shared', 'its root disk is local');
});
