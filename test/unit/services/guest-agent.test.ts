/** The guest agent service (exec, show's guest facts, the stop's shutdown) against a fake agent. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { instancePaths } from '../../../src/core/paths.js';
import { validateCreate } from '../../../src/core/spec.js';
import { GuestAgentService } from '../../../src/services/guest-agent.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { AgentError, FakeAgent, NO_REPLY, type Handler } from '../qemu/fake-qga.js';

function rowOf(state: InstanceRow['state'] = 'running', agent = true): InstanceRow {
  const { spec } = validateCreate({ name: 'vm', image: 'tiny', agent }, { cpus: 4, memory: 2 ** 32, cpuList: [0] });
  return { uuid: '00000000-0000-4000-8000-000000000001', name: 'vm', spec, state, accel: 'tcg', pid: state === 'stopped' ? null : 4242, pidStart: 1, mac: '52:54:00:00:00:01', createdAt: 'x', startedAt: 'x', lastError: null, updatedAt: 'x' };
}

async function setup(handlers: Record<string, Handler>, row = rowOf()): Promise<{ svc: GuestAgentService; agent: FakeAgent; row: InstanceRow; done: () => Promise<void> }> {
  const agent = new FakeAgent(handlers);
  await agent.start();
  const r = { ...row };
  const svc = new GuestAgentService({ instances: { rowOf: () => r, paths: (x) => ({ ...instancePaths('/nonexistent', x.uuid), agent: agent.socket }) } });
  return { svc, agent, row: r, done: async () => { await svc.hooks().exited?.(r); await agent.close(); } };
}

test('exec: guest-exec with the program, its arguments, capture-output and stdin, then guest-exec-status until it exited; output decoded', async () => {
  let started: Record<string, unknown> = {};
  let polls = 0;
  const { svc, agent, done } = await setup({
    'guest-exec': (a) => { started = a; return { pid: 77 }; },
    'guest-exec-status': (a) => {
      assert.equal(a.pid, 77);
      if (++polls < 3) return { exited: false };
      return { exited: true, exitcode: 3, 'out-data': Buffer.from('out\n').toString('base64'), 'err-data': Buffer.from('err\n').toString('base64') };
    },
  });
  try {
    const r = await svc.exec('vm', { command: ['sh', '-c', 'echo out; echo err >&2; exit 3'], stdin: Buffer.from('in') });
    assert.deepEqual(started, { path: 'sh', arg: ['-c', 'echo out; echo err >&2; exit 3'], 'capture-output': true, 'input-data': Buffer.from('in').toString('base64') });
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdout.toString(), 'out\n');
    assert.equal(r.stderr.toString(), 'err\n');
    assert.equal(polls, 3);
    assert.deepEqual(agent.received.filter((c) => c !== 'sync'), ['guest-exec', 'guest-exec-status', 'guest-exec-status', 'guest-exec-status']);
  } finally {
    await done();
  }
});

test('exec of a command that does not end within the timeout: TIMEOUT naming its pid in the guest', async () => {
  const { svc, done } = await setup({ 'guest-exec': () => ({ pid: 5 }), 'guest-exec-status': () => ({ exited: false }) });
  try {
    await assert.rejects(svc.exec('vm', { command: ['sleep', '100'], stdin: null, timeout: 1 }), (e: unknown) => {
      assert.ok(e instanceof CorralError && e.code === 'TIMEOUT', String(e));
      assert.match(e.message, /"sleep 100" did not end within 1s in instance "vm" \(pid 5 in the guest, which may still run it\)/);
      return true;
    });
  } finally {
    await done();
  }
});

test('exec of a program the guest cannot start: the agent\'s refusal, AGENT_FAILED', async () => {
  const { svc, done } = await setup({ 'guest-exec': () => { throw new AgentError('GenericError', 'Failed to execute child process "nope" (No such file or directory)'); } });
  try {
    await assert.rejects(svc.exec('vm', { command: ['nope'], stdin: null }), (e: unknown) => e instanceof CorralError && e.code === 'AGENT_FAILED' && /No such file/.test(e.message));
  } finally {
    await done();
  }
});

test('exec without a channel or on a stopped instance: AGENT_UNAVAILABLE saying which, and the agent is never asked', async () => {
  for (const [row, reason, re] of [[rowOf('running', false), 'no-channel', /no guest agent channel/], [rowOf('stopped'), 'not-running', /is stopped/], [rowOf('paused'), 'not-running', /is paused/]] as const) {
    const { svc, agent, done } = await setup({}, row);
    try {
      await assert.rejects(svc.exec('vm', { command: ['true'], stdin: null }), (e: unknown) => e instanceof CorralError && e.code === 'AGENT_UNAVAILABLE' && e.details.reason === reason && re.test(e.message));
      assert.equal(await svc.info(row), null);
      assert.equal(agent.connections, 0);
    } finally {
      await done();
    }
  }
});

test('info: the guest\'s OS and interfaces, kept for a few seconds; dropped when its QEMU ends', async () => {
  const { svc, agent, row, done } = await setup({
    'guest-get-osinfo': () => ({ id: 'corral-tiny', 'pretty-name': 'Corral tiny 1' }),
    'guest-network-get-interfaces': () => [{ name: 'eth0', 'ip-addresses': [{ 'ip-address-type': 'ipv4', 'ip-address': '10.0.2.15', prefix: 24 }] }],
  });
  try {
    const info = await svc.info(row);
    assert.deepEqual(info, { os: { id: 'corral-tiny', prettyName: 'Corral tiny 1' }, interfaces: [{ name: 'eth0', addresses: [{ family: 'ipv4', address: '10.0.2.15', prefix: 24 }] }] });
    assert.deepEqual(await Promise.all([svc.info(row), svc.info(row)]), [info, info]);
    assert.equal(agent.received.filter((c) => c === 'guest-get-osinfo').length, 1, 'cached');
    await svc.hooks().exited?.(row);
    await svc.info(row);
    assert.equal(agent.received.filter((c) => c === 'guest-get-osinfo').length, 2, 'asked again after the QEMU ended');
  } finally {
    await done();
  }
});

test('info of a guest whose agent is silent: null after the short timeout, never an error or a hang', async () => {
  const { svc, agent, row, done } = await setup({});
  agent.mute = true;
  try {
    const t0 = Date.now();
    assert.equal(await svc.info(row), null);
    assert.ok(Date.now() - t0 < 10_000);
  } finally {
    await done();
  }
});

test('shutdown asks guest-shutdown (powerdown) of a stopping guest and does not wait for an answer', async () => {
  let asked!: (mode: unknown) => void;
  const mode = new Promise((r) => { asked = r; });
  const { svc, row, done } = await setup({ 'guest-shutdown': (a) => { asked(a.mode); return NO_REPLY; } }, rowOf('stopping'));
  try {
    await svc.shutdown(row);
    assert.equal(await mode, 'powerdown');
  } finally {
    await done();
  }
});

/** guest-network-get-interfaces as qemu-ga answers it: lo, and eth0 with the NIC's MAC and its /proc/net/dev counters. */
const IFACES = [
  { name: 'lo', 'hardware-address': '00:00:00:00:00:00', statistics: { 'rx-bytes': 1, 'rx-packets': 1, 'rx-errs': 0, 'rx-dropped': 0, 'tx-bytes': 1, 'tx-packets': 1, 'tx-errs': 0, 'tx-dropped': 0 } },
  { name: 'eth0', 'hardware-address': '52:54:00:00:00:01', 'ip-addresses': [], statistics: { 'rx-bytes': 5000, 'rx-packets': 50, 'rx-errs': 0, 'rx-dropped': 0, 'tx-bytes': 700, 'tx-packets': 7, 'tx-errs': 0, 'tx-dropped': 0 } },
];
const asked = (agent: FakeAgent): number => agent.received.filter((c) => c === 'guest-network-get-interfaces').length;

test('nicCounters: the guest\'s interfaces with their counters; one answer serves every caller for a second', async () => {
  const { svc, agent, row, done } = await setup({ 'guest-network-get-interfaces': () => IFACES });
  try {
    const [a, b] = await Promise.all([svc.nicCounters(row), svc.nicCounters(row)]);
    assert.deepEqual(a?.find((i) => i.name === 'eth0'), { name: 'eth0', mac: '52:54:00:00:00:01', rxBytes: 5000, rxPackets: 50, txBytes: 700, txPackets: 7 });
    assert.deepEqual(b, a);
    assert.deepEqual(await svc.nicCounters(row), a);
    assert.equal(asked(agent), 1, 'one call for three readers');
  } finally {
    await done();
  }
});

test('nicCounters of a slow agent: the pass is not held past the wait, one call only is in flight, and its late answer serves the next pass', async () => {
  let answer!: () => void;
  const { svc, agent, row, done } = await setup({ 'guest-network-get-interfaces': () => new Promise((r) => { answer = () => r(IFACES); }) });
  try {
    const t0 = Date.now();
    const [first, second] = await Promise.all([svc.nicCounters(row), svc.nicCounters(row)]);
    const waited = Date.now() - t0;
    assert.equal(first, null, 'no figures, not zeros, while the agent has not answered');
    assert.equal(second, null);
    assert.ok(waited >= 900 && waited < 2500, `held ${waited} ms`);
    assert.equal(asked(agent), 1, 'the second caller waits on the call in flight');
    answer();
    await new Promise((r) => setTimeout(r, 100));
    const next = await svc.nicCounters(row);
    assert.equal(next?.find((i) => i.name === 'eth0')?.rxBytes, 5000);
    assert.equal(asked(agent), 1, 'the late answer served it');
  } finally {
    await done();
  }
});

test('nicCounters with no agent to ask (no channel, paused, stopped) or a silent one: null, never an error', async () => {
  for (const row of [rowOf('running', false), rowOf('paused'), rowOf('stopped')]) {
    const { svc, agent, done } = await setup({ 'guest-network-get-interfaces': () => IFACES }, row);
    try {
      assert.equal(await svc.nicCounters(row), null);
      assert.equal(agent.connections, 0);
    } finally {
      await done();
    }
  }
  const { svc, agent, row, done } = await setup({});
  agent.mute = true;
  try {
    assert.equal(await svc.nicCounters(row), null);
  } finally {
    await done();
  }
});
