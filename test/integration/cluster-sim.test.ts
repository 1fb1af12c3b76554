/**
 * The simulated agent (`corral agent --simulate 3`): one process joins a controller as three hosts, each with its own
 * certificate and API; they are listed `up` with the pool they were given, and an instance created through the
 * controller lands on one of them and runs there (the fake hypervisor: no QEMU); the controller's list shows its own
 * calls at once, and a heartbeat carries the host's instance list only when it changed (counted in the agents' debug
 * log). Needs PostgreSQL, not the tiny image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Controller, SimAgent, freePort, freePortRange, runCli } from './cluster-harness.js';
import { waitFor } from './harness.js';
import { startPostgres, type TestPostgres } from '../unit/postgres.js';

let pg: TestPostgres;
let ctl: Controller;
let sim: SimAgent;

before(async () => {
  pg = await startPostgres();
  const init = await runCli(['cluster', 'init', '--database', pg.url, '--json'], {});
  assert.equal(init.code, 0, init.stderr);
  ctl = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '5000' });
  await ctl.start();
  sim = new SimAgent(ctl, 3, await freePortRange(3), ['--name-prefix', 'fake', '--cpus', '4', '--memory', '8G'], { CORRAL_HEARTBEAT_MS: '300', CORRAL_LOG_LEVEL: 'debug' });
});

after(async () => {
  await sim?.destroy();
  await ctl?.destroy();
  await pg?.stop();
});

test('a simulated agent of 3 hosts joins; an instance created through the controller runs on one of them', { timeout: 60_000 }, async () => {
  const line = await sim.start(45_000);
  assert.match(line, /3 hosts joined and up \(fake-001\.\.fake-003 /);

  const list = await ctl.cli(['host', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const hosts = JSON.parse(list.stdout) as Array<{ name: string; state: string; address: string; uuid: string; capacity: { cpus: number; memory: number } }>;
  assert.deepEqual(hosts.map((h) => [h.name, h.state]), [['fake-001', 'up'], ['fake-002', 'up'], ['fake-003', 'up']]);
  for (const [i, h] of hosts.entries()) {
    assert.equal(h.address, `https://127.0.0.1:${sim.basePort + i}`);
    // the pool the host reports: 4 CPUs at the default ratio of 4 vCPUs each, 8 GiB with nothing reserved
    assert.deepEqual(h.capacity, { cpus: 16, memory: 8 * 1024 ** 3 });
    // each host joined as a real agent does: its own identity in its own dir
    const id = JSON.parse(readFileSync(join(sim.dataDir, 'sim', h.name, 'cluster', 'cluster.json'), 'utf8'));
    assert.equal(id.uuid, h.uuid);
    assert.ok(existsSync(join(sim.dataDir, 'sim', h.name, 'cluster', 'agent.key')));
  }

  const made = await ctl.cli(['create', 'web1', '--image', 'tiny', '--memory', '64M', '--start', '--json']);
  assert.equal(made.code, 0, made.stderr);
  const view = JSON.parse(made.stdout);
  assert.ok(hosts.some((h) => h.name === view.host), `placed on a simulated host: ${view.host}`);
  assert.equal(view.state, 'running');

  const shown = await ctl.cli(['show', 'web1', '--json']);
  assert.equal(shown.code, 0, shown.stderr);
  const s = JSON.parse(shown.stdout);
  assert.equal(s.state, 'running');
  assert.equal(s.host, view.host);
  assert.ok(s.pid >= 5_000_000, `a fake process, not a real one: pid ${s.pid}`);
  // listed through the controller, from the host's own store
  const rows = await ctl.cli(['list', '--json']);
  assert.equal(rows.code, 0, rows.stderr);
  assert.deepEqual(JSON.parse(rows.stdout).instances.map((r: any) => [r.name, r.state, r.host]), [['web1', 'running', view.host]]);

  const stop = await ctl.cli(['stop', 'web1', '--json']);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(JSON.parse((await ctl.cli(['show', 'web1', '--json'])).stdout).state, 'stopped');
  // the list shows the controller's own call at once, from the agent's reply (no beat needed)
  const after = JSON.parse((await ctl.cli(['list', '--json'])).stdout).instances;
  assert.deepEqual(after.map((r: any) => [r.name, r.state, r.host, r.pid, r.uptime, r.stale]), [['web1', 'stopped', view.host, null, null, false]]);

  // nothing changes now: the host's beats go on, without its instance list (once the stop's change was sent)
  const counts = (): { sent: number; omitted: number; beats: number } => {
    const beats = sim.log.split('\n').filter((l) => l.endsWith('}') && l.includes('"msg":"heartbeat"') && l.includes(`"host":"${view.host}"`)).map((l) => JSON.parse(l));
    const last = beats[beats.length - 1];
    return { sent: last?.listsSent ?? 0, omitted: last?.listsOmitted ?? 0, beats: beats.length };
  };
  const atStop = counts();
  await waitFor(() => counts().omitted > atStop.omitted, 10_000, 'a beat without the list', () => sim.log.slice(-2000));
  const before = counts();
  await waitFor(() => counts().beats >= before.beats + 4, 10_000, 'four more beats');
  const later = counts();
  assert.ok(before.sent >= 1, 'the list went at least once');
  assert.equal(later.sent, before.sent, `no list sent while nothing changed: ${JSON.stringify([before, later])}`);
  assert.ok(later.omitted >= before.omitted + 4, JSON.stringify([before, later]));
  assert.equal(await sim.stop(), 0, sim.log);
});
