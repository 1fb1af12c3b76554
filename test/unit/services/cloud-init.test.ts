/**
 * The cloud-init seed of an instance through its lifecycle (fake hypervisor, the real seed hooks and xorriso): written
 * from the spec at each start into the instance dir, lent to QEMU's group read-only, named in the launch plan, the
 * same bytes at every start, taken back at the exit; no seed for an instance without cloud-init.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { instancePaths } from '../../../src/core/paths.js';
import { cloudInitHooks } from '../../../src/services/cloud-init.js';
import { harness } from './lifecycle-harness.js';
import { have } from '../fixtures.js';

const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgLAhB0gRNMGMYhLuaFd6rlhrLGWyvmJyszXiWuwkWt me@host';
const skip = !have('xorriso', ['-version']) ? 'xorriso is not installed (scripts/host-deps.sh installs it)' : process.getuid?.() !== 0 ? 'handing files to QEMU\'s group needs root' : false;
const who = { user: 'nobody', uid: 65534, gid: 65534, groups: [] };

/** The files of an ISO, extracted by xorriso (name -> text). */
function isoFiles(iso: string): Record<string, string> {
  const out = mkdtempSync(join(tmpdir(), 'corral-seed-'));
  try {
    execFileSync('xorriso', ['-osirrox', 'on', '-indev', iso, '-extract', '/', out], { stdio: 'ignore' });
    return Object.fromEntries(readdirSync(out).sort().map((f) => [f, readFileSync(join(out, f), 'utf8')]));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

test('a start writes the seed from the spec, lent read-only to QEMU\'s group; the same bytes at the next start', { skip }, async () => {
  const h = harness();
  h.svc.addHooks('cloud-init', cloudInitHooks(who, (row) => h.svc.paths(row)));
  const row = h.add('web1', { sshKeys: [ED], networkConfig: 'version: 2\nethernets: {}\n' });
  const seed = instancePaths(h.dataDir, row.uuid).seed;
  assert.equal(existsSync(seed), false, 'nothing before the first start');
  await h.svc.start('web1');
  assert.equal(h.driver.launches.at(-1)?.seed, seed);
  const st = statSync(seed);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [0, who.gid, 0o640]);
  assert.equal(execFileSync('blkid', ['-o', 'value', '-s', 'LABEL', seed], { encoding: 'utf8' }).trim(), 'cidata');
  const files = isoFiles(seed);
  assert.deepEqual(Object.keys(files), ['meta-data', 'network-config', 'user-data']);
  assert.equal(files['meta-data'], `instance-id: "${row.uuid}"\nlocal-hostname: "web1"\npublic-keys:\n  - "${ED}"\n`);
  assert.equal(files['network-config'], 'version: 2\nethernets: {}\n');
  assert.match(files['user-data']!, /^#cloud-config\n/);
  const first = readFileSync(seed);

  await h.svc.kill('web1');
  assert.deepEqual([statSync(seed).uid, statSync(seed).gid, statSync(seed).mode & 0o777], [0, 0, 0o600], 'taken back at the exit');
  await new Promise((r) => setTimeout(r, 1100)); // a second later: no date in it may differ
  await h.svc.start('web1');
  assert.ok(readFileSync(seed).equals(first), 'written again, byte for byte the same (a migration\'s destination writes the same disk)');
  await h.svc.kill('web1');
});

test('no cloud-init in the spec: no seed in the plan, none in the instance dir', { skip }, async () => {
  const h = harness();
  h.svc.addHooks('cloud-init', cloudInitHooks(who, (row) => h.svc.paths(row)));
  const row = h.add('plain');
  await h.svc.start('plain');
  assert.equal(h.driver.launches.at(-1)?.seed, undefined);
  assert.equal(existsSync(instancePaths(h.dataDir, row.uuid).seed), false);
  await h.svc.kill('plain');
});
