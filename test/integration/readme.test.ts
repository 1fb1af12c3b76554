/**
 * The README's examples run as written: every `corral ...` command in its ```sh blocks is run, in order, by the
 * real CLI against a real daemon (in its own network namespace, so that bridge networks touch nothing of the
 * host). A command succeeds unless the README itself says it cannot here: a line marked "(KVM only)" under
 * TCG must be refused with UNSUPPORTED, and a device the host lacks (/dev/vhost-net, a vhost-user back end's
 * socket) with DEVICE_UNAVAILABLE. Sections "on a real host" (PCI passthrough) are left out: they need an IOMMU
 * (test/integration/passthrough.test.ts runs them on a fake sysfs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, REPO, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';
import { readmeCommands, type ReadmeCommand } from './readme-commands.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: 'crl-readme' });

type Expect = { ok: true } | { error: string; why: string };

/** The vhost-user back ends the README registered so far: name -> socket. */
const backends = new Map<string, string>();

function expectationOf(c: ReadmeCommand, accel: string): Expect {
  if (/\(KVM only\)/.test(c.comment) && accel !== 'kvm') return { error: 'UNSUPPORTED', why: 'KVM only, and this host runs TCG' };
  const i = c.args.indexOf('--model');
  const model = i >= 0 ? c.args[i + 1] : undefined;
  if (model === 'vhost-net' && !existsSync('/dev/vhost-net')) return { error: 'DEVICE_UNAVAILABLE', why: 'no /dev/vhost-net on this host' };
  if (model === 'vhost-user-net') {
    const sock = backends.get(c.args[c.args.indexOf('--backend') + 1] ?? '') ?? '';
    if (!existsSync(sock)) return { error: 'DEVICE_UNAVAILABLE', why: `no vhost-user back end at ${sock || 'an unregistered socket'}` };
  }
  if (c.args[0] === 'vhost-user' && c.args[1] === 'add') backends.set(c.args[2] ?? '', c.args[3] ?? '');
  return { ok: true };
}

const readyCount = (log: string): number => (log.match(/corral-tiny ready/g) ?? []).length;

/** The instance a command starts (create --start, start, restart), whose guest the next commands expect up. */
function starts(c: ReadmeCommand): string | null {
  const [verb, name] = c.args;
  if (verb === 'create' && c.args.includes('--start')) return name ?? null;
  if (verb === 'start' || verb === 'restart') return name ?? null;
  return null;
}

test('every corral command in the README runs as written', { skip, timeout: 900_000 }, async (t) => {
  const cmds = readmeCommands(readFileSync(join(REPO, 'README.md'), 'utf8'));
  const host = JSON.parse((await d.cli(['host', 'show', '--json'])).stdout) as { accelerator?: { accel?: string } };
  const accel = host.accelerator?.accel ?? 'tcg';
  let ran = 0;
  for (const c of cmds) {
    if (c.skip) {
      t.diagnostic(`README:${c.line} not run (${c.skip}): ${c.text}`);
      continue;
    }
    const want = expectationOf(c, accel);
    if (c.args[0] === 'events') {
      // it follows the stream until interrupted: it must connect and stay, saying nothing on stderr
      const r = await d.cli(c.args, undefined, 3000);
      assert.equal(r.stderr, '', `README:${c.line} ${c.text}`);
      ran++;
      continue;
    }
    const booted = starts(c);
    const before = booted ? readyCount(await d.consoleLog(booted).catch(() => '')) : 0;
    const r = await d.cli(c.args, '', 180_000);
    const where = `README:${c.line} \`${c.text}\` -> exit ${r.code}\n${r.stdout}\n${r.stderr}`;
    if ('ok' in want) {
      assert.equal(r.code, 0, where);
      assert.doesNotMatch(r.stderr, /^error:/m, where);
    } else {
      assert.equal(r.code, 1, where);
      assert.match(r.stderr, new RegExp(`^error: ${want.error}: `, 'm'), `${where} (expected ${want.error}: ${want.why})`);
      t.diagnostic(`README:${c.line} refused here as the README says (${want.why}): ${c.text}`);
    }
    // as a user would, let a guest that was just started come up before going on
    if (booted) {
      let log = '';
      await waitFor(async () => readyCount((log = await d.consoleLog(booted))) > before, 90_000, `${booted} to boot`, () => log.slice(-1000));
    }
    ran++;
  }
  t.diagnostic(`${ran} README commands run`);
  assert.ok(ran >= 40, `only ${ran} commands found in the README: is the parser broken?`);
});
