/**
 * NICs on the user-mode network: each emulated and paravirtual model is seen by the guest with its own driver,
 * gets its DHCP address and carries data both ways (a host client through a port forward to a guest server:
 * the host's own services are fenced off from guests, see guest-fence.test.ts); a clashing forward is refused;
 * a NIC hot-plugged into a running guest appears as eth1, gets an address, and goes away on detach; bad requests leave nothing.
 * A vhost-user-net NIC takes only a back end an admin registered, which cannot be removed while a NIC names it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { AddressInfo, createServer as createUnixServer } from 'node:net';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
useDaemon((x) => { d = x; });


const token = `corral-${process.pid}-${Date.now()}`;

const DRIVER: Record<string, RegExp> = { 'virtio-net': /virtio_net/, e1000: /e1000/, rtl8139: /8139(cp|too)/ };

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  const p = (s.address() as AddressInfo).port;
  await new Promise((res) => s.close(res));
  return p;
}

test('each NIC model on the user network: the guest driver, a DHCP address, data both ways', { skip, timeout: 300_000 }, async () => {
  for (const model of ['e1000', 'rtl8139', 'virtio-net']) {
    const name = `n-${model}`;
    const fwd = await freePort();
    const cli = await d.cli(['create', name, '--image', 'tiny', '--nic-model', model, '--forward', `tcp:${fwd}:8080`, '--start']);
    assert.equal(cli.code, 0, cli.stderr);
    await d.waitConsole(name, /corral-tiny ready/);
    const c = await ConsoleSession.open(d, name);
    try {
      assert.match(await c.run('readlink /sys/class/net/eth0/device/driver'), DRIVER[model]!);
      const addr = await c.run('i=0; while [ $i -lt 50 ] && [ ! -e /run/udhcpc.eth0.up ]; do sleep 0.2; i=$((i+1)); done; ip -4 addr show eth0');
      assert.match(addr, /inet 10\.0\.2\.15\/24/, `${model}: ${addr}`);
      const mac = (await d.ok('GET', `/v1/instances/${name}/nics`)).nics[0].mac;
      assert.match(await c.run('cat /sys/class/net/eth0/address'), new RegExp(mac));
      await c.run(`mkdir -p /tmp/www && echo ${model}-${token} > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && echo started`);
      assert.equal((await (await fetch(`http://127.0.0.1:${fwd}/index.html`)).text()).trim(), `${model}-${token}`);
    } finally {
      await c.close();
    }
    const devs = (await d.ok('GET', `/v1/instances/${name}/devices`)).devices;
    const nic = devs.find((x: any) => x.kind === 'nic');
    assert.equal(nic.approach, model === 'virtio-net' ? 'paravirtual' : 'emulated');
    await d.ok('DELETE', `/v1/instances/${name}?force=true`);
  }
});

test('port forwards reach a server in the guest; a clashing forward is refused', { skip, timeout: 120_000 }, async () => {
  const fwd = await freePort();
  await d.ok('POST', '/v1/instances', { name: 'fw1', image: 'tiny', forwards: [`tcp:127.0.0.1:${fwd}:8080`], start: true }, 201);
  await d.waitConsole('fw1', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'fw1');
  try {
    await c.run(`mkdir -p /tmp/www && echo guest-${token} > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && echo started`);
  } finally {
    await c.close();
  }
  const got = await (await fetch(`http://127.0.0.1:${fwd}/index.html`)).text();
  assert.equal(got.trim(), `guest-${token}`);
  const clash = await d.api('POST', '/v1/instances', { name: 'fw2', image: 'tiny', forwards: [`${fwd}:80`] });
  assert.equal(clash.status, 409);
  assert.match(clash.body.error.message, /already forwarded to instance "fw1"/);
  assert.equal((await d.api('GET', '/v1/instances/fw2')).status, 404);
  await d.ok('DELETE', '/v1/instances/fw1?force=true');
});

test('a NIC hot-plugged into a running guest gets an address; detach removes it', { skip, timeout: 180_000 }, async () => {
  await d.ok('POST', '/v1/instances', { name: 'hp1', image: 'tiny', start: true }, 201);
  await d.waitConsole('hp1', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'hp1');
  try {
    assert.doesNotMatch(await c.run('ls /sys/class/net'), /eth1/);
    const att = await d.cli(['nic', 'attach', 'hp1', '--model', 'e1000']);
    assert.equal(att.code, 0, att.stderr);
    assert.match(att.stdout, /NIC net1 attached \(e1000, 52:54:00:/);
    const up = await c.run('i=0; while [ $i -lt 50 ] && [ ! -e /sys/class/net/eth1 ]; do sleep 0.2; i=$((i+1)); done; ip link set eth1 up; udhcpc -i eth1 -s /etc/udhcpc.script -n -q -t 5 -T 1 >/dev/null 2>&1; ip -4 addr show eth1; readlink /sys/class/net/eth1/device/driver', 40_000);
    assert.match(up, /inet 10\.0\.2\.15\/24/);
    assert.match(up, /e1000/);
    const list = await d.cli(['nic', 'list', 'hp1']);
    assert.match(list.stdout, /net1\s+e1000\s+52:54:00/);

    const det = await d.cli(['nic', 'detach', 'hp1', 'net1']);
    assert.equal(det.code, 0, det.stderr);
    const gone = await c.run('i=0; while [ $i -lt 50 ] && [ -e /sys/class/net/eth1 ]; do sleep 0.2; i=$((i+1)); done; echo "NET=$(ls /sys/class/net | tr \'\\n\' ,)"');
    assert.match(gone, /NET=eth0,lo,\r?\n/);
    assert.equal((await d.ok('GET', '/v1/instances/hp1/nics')).nics.length, 1);
  } finally {
    await c.close();
  }
  // after a restart the guest has the same MAC on eth0
  const mac = (await d.ok('GET', '/v1/instances/hp1/nics')).nics[0].mac;
  await d.ok('POST', '/v1/instances/hp1/restart', {});
  await d.waitConsole('hp1', /corral-tiny ready/);
  const c2 = await ConsoleSession.open(d, 'hp1');
  try {
    assert.match(await c2.run('cat /sys/class/net/eth0/address'), new RegExp(mac));
  } finally {
    await c2.close();
  }
  await d.ok('POST', '/v1/instances/hp1/kill', {});
});

test('two NICs at boot: the guest takes a DHCP address on each', { skip, timeout: 120_000 }, async () => {
  await d.ok('POST', '/v1/instances', { name: 'two', image: 'tiny', nicModel: 'e1000' }, 201);
  await d.ok('POST', '/v1/instances/two/nics', { model: 'virtio-net' }, 201);
  await d.ok('POST', '/v1/instances/two/start', {});
  await d.waitConsole('two', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'two');
  try {
    const out = await c.run('i=0; while [ $i -lt 100 ] && ! { [ -e /run/udhcpc.eth0.up ] && [ -e /run/udhcpc.eth1.up ]; }; do sleep 0.2; i=$((i+1)); done; for n in eth0 eth1; do echo "$n $(readlink /sys/class/net/$n/device/driver) $(ip -4 -o addr show $n)"; done', 40_000);
    assert.match(out, /eth0 \S*virtio_net\S* .*inet 10\.0\.2\.15\//, out);
    assert.match(out, /eth1 \S*e1000\S* .*inet 10\.0\.2\.15\//, out);
  } finally {
    await c.close();
  }
  await d.ok('DELETE', '/v1/instances/two?force=true');
});

test('bad NIC requests: coded errors, nothing changed', { skip, timeout: 60_000 }, async () => {
  const before = (await d.ok('GET', '/v1/instances/hp1/nics')).nics;
  const cases: Array<[unknown, number, string, RegExp]> = [
    [{ model: 'ne2000' }, 400, 'INVALID_SPEC', /not a NIC model/],
    [{ network: 'nowhere' }, 404, 'NETWORK_NOT_FOUND', /nowhere/],
    [{ model: 'vhost-user-net', socket: '/run/corral-no-such.sock' }, 400, 'INVALID_SPEC', /socket: unknown field/],
    [{ model: 'vhost-user-net', backend: 'nowhere' }, 400, 'INVALID_SPEC', /backend: no vhost-user back end "nowhere" is registered/],
    [{ model: 'vhost-net' }, 400, 'INVALID_SPEC', /bridge network/],
    [{ model: 'e1000', queues: 4 }, 400, 'INVALID_SPEC', /one queue/],
    [{ mac: '01:02:03:04:05:06' }, 400, 'INVALID_SPEC', /multicast/],
    [{ forwards: ['tcp:99999:22'] }, 400, 'INVALID_SPEC', /not a port/],
  ];
  for (const [body, status, code, msg] of cases) {
    const r = await d.api('POST', '/v1/instances/hp1/nics', body);
    assert.equal(r.status, status, JSON.stringify([body, r.body]));
    assert.equal(r.body.error.code, code);
    assert.match(r.body.error.message, msg);
  }
  const missing = await d.api('DELETE', '/v1/instances/hp1/nics/net9');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'NIC_NOT_FOUND');
  assert.deepEqual((await d.ok('GET', '/v1/instances/hp1/nics')).nics, before);
  const none = await d.cli(['create', 'nonet', '--image', 'tiny', '--network', 'none']);
  assert.equal(none.code, 0, none.stderr);
  assert.deepEqual((await d.ok('GET', '/v1/instances/nonet/nics')).nics, []);
});

test('vhost-user back ends: registered by name; a NIC names one that listens; in use, it cannot be removed', { skip, timeout: 60_000 }, async () => {
  const sock = `/tmp/corral-vu-${process.pid}.sock`;
  const server = createUnixServer().listen(sock);
  await new Promise((r) => server.once('listening', r));
  try {
    const added = await d.cli(['vhost-user', 'add', 'ovs0', sock]);
    assert.equal(added.code, 0, added.stderr);
    assert.equal((await d.cli(['vhost-user', 'add', 'idle0', '/run/corral-no-such.sock'])).code, 0);
    const list = await d.cli(['vhost-user', 'list']);
    assert.match(list.stdout, new RegExp(`^ovs0\\s+${sock}\\s+yes\\s+-$`, 'm'), list.stdout);
    assert.match(list.stdout, /^idle0\s+\/run\/corral-no-such\.sock\s+no\s+-$/m, list.stdout);
    // a path inside the data dir (another VM's disk or monitor socket) is never a back end
    const mine = await d.api('POST', '/v1/vhost-user', { name: 'mine', socket: `${d.dataDir}/corral.sock` });
    assert.equal(mine.status, 400);
    assert.equal(mine.body.error.field, 'socket');
    await d.ok('POST', '/v1/instances', { name: 'vu1', image: 'tiny' }, 201);
    const idle = await d.api('POST', '/v1/instances/vu1/nics', { model: 'vhost-user-net', backend: 'idle0' });
    assert.equal(idle.status, 400);
    assert.equal(idle.body.error.code, 'DEVICE_UNAVAILABLE');
    assert.match(idle.body.error.message, /no vhost-user back end listens on \/run\/corral-no-such\.sock/);
    const att = await d.cli(['nic', 'attach', 'vu1', '--model', 'vhost-user-net', '--backend', 'ovs0']);
    assert.equal(att.code, 0, att.stderr);
    const n = (await d.ok('GET', '/v1/instances/vu1/nics')).nics.find((x: { model: string }) => x.model === 'vhost-user-net');
    assert.deepEqual([n.backend, n.socket, n.network], ['ovs0', sock, null]);
    const busy = await d.cli(['vhost-user', 'remove', 'ovs0']);
    assert.equal(busy.code, 1);
    assert.match(busy.stderr, /^error: DEVICE_IN_USE: .*vu1\/net1/m);
    await d.ok('DELETE', `/v1/instances/vu1/nics/${n.id}`);
    for (const name of ['ovs0', 'idle0']) assert.equal((await d.cli(['vhost-user', 'remove', name])).code, 0);
    assert.deepEqual((await d.ok('GET', '/v1/vhost-user')).backends, []);
    await d.ok('DELETE', '/v1/instances/vu1');
  } finally {
    server.close();
  }
});
