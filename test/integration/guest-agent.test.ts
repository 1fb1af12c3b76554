/**
 * The guest agent with the tiny image (which ships the host's qemu-ga, started from /etc/rc on the port named
 * org.qemu.guest_agent.0): `corral exec` runs a command in the guest and returns its output and exit code, `corral
 * show` has the guest's address and OS, an instance made with --no-agent has no channel and says so, and a stop of a
 * guest that ignores ACPI goes through the agent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

const AGENT_PORT = 'org.qemu.guest_agent.0';

/** Once the guest's agent answers an exec (it starts with the guest; TCG boots take a while under load). */
async function agentUp(name: string): Promise<void> {
  let last = '';
  await waitFor(async () => {
    const r = await d.cli(['exec', name, '--', 'true']);
    last = `${r.code} ${r.stderr}`;
    return r.code === 0;
  }, 180_000, `the guest agent of ${name} to answer`, () => last);
}

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
}

test('exec runs a command in the guest: its stdout, its stderr and its exit code, as the CLI\'s own', { skip, timeout: 300_000 }, async () => {
  const c = await d.cli(['create', 'ga1', '--image', 'tiny', '--memory', '192M', '--start']);
  assert.equal(c.code, 0, c.stderr);
  await d.waitConsole('ga1', /corral-tiny ready/, 120_000);
  await agentUp('ga1');

  const r = await d.cli(['exec', 'ga1', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');

  const j = await d.cli(['exec', 'ga1', '--json', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(j.code, 3);
  const res = JSON.parse(j.stdout) as { exitCode: number; stdout: string; stderr: string; signal: number | null };
  assert.deepEqual([res.exitCode, res.stdout, res.stderr, res.signal], [3, 'out\n', 'err\n', null]);

  // it ran in the guest: the guest's hostname (from corral.hostname=ga1) and its own os-release; stdin reaches it
  const who = await d.cli(['exec', 'ga1', '--stdin', '--', 'sh', '-c', 'cat; hostname; . /etc/os-release; echo "$ID"'], 'piped\n');
  assert.equal(who.code, 0, who.stderr);
  assert.equal(who.stdout, 'piped\nga1\ncorral-tiny\n');

  // a program the guest does not have: the agent's refusal, coded
  const missing = await d.api('POST', '/v1/instances/ga1/exec', { command: ['no-such-program'] });
  assert.equal(missing.status, 502, JSON.stringify(missing.body));
  assert.equal(missing.body.error.code, 'AGENT_FAILED');
  assert.match(missing.body.error.message, /no-such-program/);
});

test('show has the guest\'s address on the user network and its OS, from the agent', { skip, timeout: 180_000 }, async () => {
  const pid = (await d.ok('GET', '/v1/instances/ga1')).pid as number;
  assert.ok(cmdline(pid).some((a) => a.includes(`"name":"${AGENT_PORT}"`)), 'the QEMU has the agent\'s port');
  let shown: any;
  await waitFor(async () => {
    shown = await d.ok('GET', '/v1/instances/ga1');
    return shown.guest?.interfaces?.some((i: any) => i.addresses.some((a: any) => a.address === '10.0.2.15'));
  }, 120_000, 'the guest\'s address in show', () => JSON.stringify(shown?.guest));
  const eth = shown.guest.interfaces.find((i: any) => i.addresses.some((a: any) => a.address === '10.0.2.15'));
  assert.equal(eth.mac, shown.mac, 'the interface the guest reports is the instance\'s first NIC');
  assert.equal(shown.guest.os.id, 'corral-tiny');
  assert.equal(shown.guest.os.prettyName, 'Corral tiny 1');
  assert.match(shown.guest.os.kernelRelease, /-amd64$/);
  const text = await d.cli(['show', 'ga1']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^agent:\s+answering$/m);
  assert.match(text.stdout, /^guest os:\s+Corral tiny 1, kernel \S+-amd64 \(x86_64\)$/m);
  assert.match(text.stdout, /^guest ips:\s+10\.0\.2\.15\/24 \(eth0\)/m);
});

test('--no-agent: no channel in QEMU\'s command line; exec and show say so; a stopped instance\'s agent is unavailable too', { skip, timeout: 240_000 }, async () => {
  const c = await d.cli(['create', 'ga2', '--image', 'tiny', '--memory', '128M', '--no-agent', '--start', '--json']);
  assert.equal(c.code, 0, c.stderr);
  const inst = JSON.parse(c.stdout);
  assert.equal(inst.spec.agent, false);
  const argv = cmdline(inst.pid);
  assert.ok(argv.includes(inst.uuid), 'this is ga2\'s QEMU');
  assert.ok(!argv.some((a) => a.includes(AGENT_PORT) || a.includes('virtio-serial') || a.includes('qga.sock')), argv.join(' '));

  const r = await d.cli(['exec', 'ga2', '--', 'true']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: AGENT_UNAVAILABLE: instance "ga2" has no guest agent channel \(it was created with --no-agent/);
  const api = await d.api('POST', '/v1/instances/ga2/exec', { command: ['true'] });
  assert.equal(api.status, 409);
  assert.deepEqual([api.body.error.code, api.body.error.reason], ['AGENT_UNAVAILABLE', 'no-channel']);
  const shown = await d.ok('GET', '/v1/instances/ga2');
  assert.equal(shown.guest, undefined);
  assert.match((await d.cli(['show', 'ga2'])).stdout, /^agent:\s+none \(created with --no-agent\)$/m);

  await d.ok('POST', '/v1/instances/ga2/kill', {});
  const stopped = await d.cli(['exec', 'ga2', '--', 'true']);
  assert.match(stopped.stderr, /^error: AGENT_UNAVAILABLE: instance "ga2" has no guest agent channel/);
  // with the channel given back (from the next start), a stopped instance's agent is still not there to ask
  assert.equal((await d.cli(['set', 'ga2', 'agent=yes'])).code, 0);
  const off = await d.api('POST', '/v1/instances/ga2/exec', { command: ['true'] });
  assert.deepEqual([off.status, off.body.error.code, off.body.error.reason], [409, 'AGENT_UNAVAILABLE', 'not-running']);
  assert.match(off.body.error.message, /is stopped/);
});

test('stop of a guest that ignores the ACPI power button goes through the guest agent, and says so', { skip, timeout: 240_000 }, async () => {
  await agentUp('ga1');
  // the guest no longer hears the power button
  const k = await d.cli(['exec', 'ga1', '--', 'killall', 'acpid']);
  assert.equal(k.code, 0, k.stderr);
  assert.equal((await d.cli(['exec', 'ga1', '--', 'pidof', 'acpid'])).code, 1, 'acpid is gone');
  const before = (await d.events()).length;
  const r = await d.ok('POST', '/v1/instances/ga1/stop', { timeout: 40 });
  assert.equal(r.state, 'stopped');
  assert.equal(r.stoppedBy, 'agent');
  assert.equal(r.killed, false);
  const evs = (await d.events()).slice(before).filter((e) => e.instance === 'ga1');
  assert.ok(evs.some((e) => e.type === 'instance.stop-agent'));
  assert.ok(!evs.some((e) => e.type === 'instance.stop-timeout'));
  // the guest shut down cleanly (its rc.shutdown ran), and QEMU said the guest asked for it
  const log = await d.consoleLog('ga1');
  assert.match(log.slice(log.lastIndexOf('corral-tiny ready')), /corral-tiny poweroff/);
  assert.equal((await d.ok('GET', '/v1/instances/ga1')).lastExit.reason, 'the guest powered off');
});
