/**
 * Nothing is ever lost: kill -9 the daemon while two VMs run; start it again and both are adopted (same pid,
 * reachable by console, stoppable), none started twice; a VM whose QEMU died meanwhile shows as crashed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });

/** Every QEMU process on the host that carries this uuid. */
function qemusWithUuid(uuid: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv[0]?.includes('qemu-system') && argv.includes(uuid)) pids.push(Number(e));
    } catch {
      /* raced */
    }
  }
  return pids;
}

test('daemon kill -9 and restart: two running VMs are adopted, a dead one is crashed', { skip, timeout: 240_000 }, async () => {
  const vms = ['a1', 'a2', 'a3'];
  const started: Record<string, { pid: number; uuid: string }> = {};
  for (const name of vms) {
    const r = await d.api('POST', '/v1/instances', { name, image: 'tiny', memory: '192M', start: true });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    started[name] = { pid: r.body.pid, uuid: r.body.uuid };
  }
  for (const name of vms) await d.waitConsole(name, /corral-tiny ready/);

  await d.kill9();
  // QEMU outlives the daemon.
  for (const name of vms) assert.deepEqual(qemusWithUuid(started[name]!.uuid), [started[name]!.pid]);
  // While the daemon is down, one QEMU dies.
  process.kill(started.a3!.pid, 'SIGKILL');
  await waitFor(() => qemusWithUuid(started.a3!.uuid).length === 0, 10_000, 'the killed QEMU of a3 to be gone');

  await d.start();
  for (const name of ['a1', 'a2']) {
    const s = (await d.api('GET', `/v1/instances/${name}`)).body;
    assert.equal(s.state, 'running', name);
    assert.equal(s.pid, started[name]!.pid, `${name} keeps its QEMU`);
    assert.deepEqual(qemusWithUuid(started[name]!.uuid), [started[name]!.pid], `${name} was not started twice`);
  }
  const a3 = (await d.api('GET', '/v1/instances/a3')).body;
  assert.equal(a3.state, 'crashed');
  assert.match(a3.lastError, /daemon was down/);

  // Starting an adopted instance again is refused: never two QEMUs for one instance.
  const twice = await d.api('POST', '/v1/instances/a1/start', {});
  assert.equal(twice.status, 409);

  // Adopted VMs are reachable by console and stoppable.
  const c = await ConsoleSession.open(d, 'a1');
  assert.match(await c.run('hostname'), /a1/);
  await c.close();
  for (const name of ['a1', 'a2']) {
    const r = await d.api('POST', `/v1/instances/${name}/stop`, { timeout: 30 });
    assert.equal(r.body.state, 'stopped');
    assert.deepEqual(qemusWithUuid(started[name]!.uuid), []);
  }
  assert.match(await d.consoleLog('a2'), /corral-tiny poweroff/);

  // The crashed one starts again.
  const again = await d.api('POST', '/v1/instances/a3/start', {});
  assert.equal(again.body.state, 'running');
  await d.api('POST', '/v1/instances/a3/kill', {});
});

test('a QEMU killed while adopted is still noticed as crashed', { skip }, async () => {
  const r = await d.api('POST', '/v1/instances/a1/start', {});
  await d.kill9();
  await d.start();
  process.kill(r.body.pid, 'SIGKILL');
  await d.waitState('a1', 'crashed', 3000);
});
