/**
 * From inside guests on a bridge (NAT) network, with the daemon in its own network namespace and listening on
 * TCP too: the host's services (one on its 127.0.0.1, one on every address, the daemon's TCP port) and a
 * metadata server at 169.254.169.254 on the host side are out of reach, while the guest still reaches a server
 * outside the host through NAT and DNS on its gateway. A guest that changes its MAC or claims another address
 * does not reach its neighbour, and does again with its own; a guest that runs a DHCP server (udhcpd) does not
 * reach a neighbour with its offers, while its other UDP does; the layer-2 filter holds across a daemon restart
 * and a stopped guest's rules go with its tap. A network whose range is full refuses another NIC.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';
import { connected, inNs, l2Table, leased, pings, plugNeighbour, plugOutside, probe, stopProbes, token, tokenServer, udpWatch } from './net-probes.js';

const skip = SKIP_NO_TINY;
const NS = `corral-bf-${process.pid}`;
const OUT_NS = `corral-bfo-${process.pid}`;
const NB_NS = `corral-bfn-${process.pid}`;
const TCP_PORT = 7443;
const GW = '10.93.0.1';
const METADATA = '169.254.169.254';
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS, args: ['--listen', `0.0.0.0:${TCP_PORT}`] });
after(() => stopProbes(OUT_NS, NB_NS));

const sessions = new Map<string, ConsoleSession>();
const ips = new Map<string, string>();
after(async () => {
  for (const c of sessions.values()) await c.close();
});

test('two guests on a bridge network boot with their fixed addresses', { skip, timeout: 180_000 }, async () => {
  await d.ok('POST', '/v1/networks', { name: 'guard', kind: 'bridge', cidr: '10.93.0.0/24' }, 201);
  for (const name of ['bf1', 'bf2']) await d.ok('POST', '/v1/instances', { name, image: 'tiny', network: 'guard', start: true }, 201);
  for (const name of ['bf1', 'bf2']) {
    await d.waitConsole(name, /corral-tiny ready/, 120_000);
    const c = await ConsoleSession.open(d, name);
    sessions.set(name, c);
    const ip = await leased(c);
    assert.equal(ip, (await d.ok('GET', `/v1/instances/${name}/nics`)).nics[0].address);
    ips.set(name, ip);
  }
});

test('from a guest: the host\'s services, the daemon\'s TCP port and 169.254.169.254 are out of reach; NAT and DNS work', { skip, timeout: 180_000 }, async () => {
  const c = sessions.get('bf1')!;
  const outIp = plugOutside(NS, OUT_NS, 'bfout0');
  const outside = token('outside');
  const outsidePort = await tokenServer(OUT_NS, '0.0.0.0', outside);
  const loopback = token('host-loopback');
  const loopbackPort = await tokenServer(NS, '127.0.0.1', loopback);
  const anyAddr = token('host-any');
  const anyPort = await tokenServer(NS, '0.0.0.0', anyAddr);
  // a metadata service on the host side, as clouds put one at 169.254.169.254
  execFileSync('ip', ['-n', NS, 'addr', 'add', `${METADATA}/32`, 'dev', 'lo']);
  const metadata = token('metadata');
  const metaPort = await tokenServer(NS, METADATA, metadata, 80);
  // the daemon's TCP API is up, seen from the host itself
  assert.equal(await inNs(NS, `require('net').connect(${TCP_PORT}, '${GW}').on('connect', () => { console.log('up'); process.exit(0); }).on('error', (e) => console.log(e.code));`), 'up');

  // positive controls: out through NAT to a server that is not the host, and DNS on the gateway
  assert.match(await probe(c, outIp, outsidePort), new RegExp(outside));
  assert.ok(connected(await probe(c, GW, 53)), 'DNS (tcp 53) on the gateway');
  for (const [what, host, port, secret] of [
    ['a service on the host\'s 127.0.0.1', GW, loopbackPort, loopback],
    ['a service on every host address', GW, anyPort, anyAddr],
    ['the daemon\'s TCP port', GW, TCP_PORT, null],
    ['the metadata address', METADATA, metaPort, metadata],
  ] as const) {
    const out = await probe(c, host, port);
    assert.equal(connected(out), false, `${what} (${host}:${port}) answered: ${out}`);
    if (secret) assert.doesNotMatch(out, new RegExp(secret), what);
  }
});

/** Change bf2's MAC or address, run fn, put it back. */
async function posing(c: ConsoleSession, how: 'mac' | 'ip', fn: () => Promise<void>): Promise<void> {
  const real = { mac: (await d.ok('GET', '/v1/instances/bf2/nics')).nics[0].mac as string, ip: ips.get('bf2')! };
  const set = (v: { mac: string; ip: string }, old: { mac: string; ip: string }): string => how === 'mac'
    ? `ip link set eth0 down; ip link set eth0 address ${v.mac}; ip link set eth0 up; ip neigh flush dev eth0; echo set`
    : `ip addr del ${old.ip}/24 dev eth0; ip addr add ${v.ip}/24 dev eth0; ip neigh flush dev eth0; echo set`;
  const fake = { mac: '52:54:00:de:ad:01', ip: '10.93.0.222' };
  await c.run(set(fake, real));
  try {
    await fn();
  } finally {
    await c.run(set(real, fake));
  }
}

test('a guest that changes its MAC or claims another address does not reach its neighbour; as itself it does', { skip, timeout: 180_000 }, async () => {
  const c = sessions.get('bf2')!;
  const neighbour = ips.get('bf1')!;
  assert.ok(await pings(c, neighbour), 'bf2 -> bf1 as itself');
  await posing(c, 'mac', async () => {
    assert.equal(await pings(c, neighbour), false, 'bf2 with another MAC reached bf1');
  });
  assert.ok(await pings(c, neighbour), 'bf2 -> bf1 with its MAC back');
  await posing(c, 'ip', async () => {
    assert.equal(await pings(c, neighbour), false, 'bf2 claiming 10.93.0.222 reached bf1');
    assert.equal(await pings(c, GW), false, 'nor its gateway');
  });
  assert.ok(await pings(c, neighbour), 'bf2 -> bf1 with its address back');
});

test('a guest cannot answer DHCP: its OFFER (udp from port 67) never reaches a neighbour, its UDP from another port does', { skip, timeout: 180_000 }, async () => {
  const c = sessions.get('bf2')!;
  const guest = ips.get('bf2')!;
  const { bridge } = await d.ok('GET', '/v1/networks/guard');
  const neighbour = plugNeighbour(NS, NB_NS, bridge, 'bfnb0', '10.93.0.250/24');
  const w = await udpWatch(NB_NS, 68); // where DHCP clients listen
  const fromGuest = (): Array<{ port: number }> => w.got.filter((g) => g.from === guest);
  const settle = async (cond: () => boolean, ms: number): Promise<void> => {
    for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 200));
  };
  // the control: busybox traceroute's first UDP probe goes to port -p + 1 (68), from a port of its own
  await c.run(`traceroute -n -m 1 -q 1 -w 2 -p 67 ${neighbour} >/dev/null 2>&1; echo TR=$?`, 30_000);
  await settle(() => fromGuest().length > 0, 10_000);
  assert.equal(fromGuest().length, 1, `the neighbour's port 68 got no UDP from the guest: ${JSON.stringify(w.got)}`);
  assert.notEqual(fromGuest()[0]!.port, 67);

  // the rogue: udhcpd on the guest answers the neighbour's DISCOVER with an OFFER, from port 67 to port 68
  await c.run("printf 'interface eth0\\nstart 10.93.0.240\\nend 10.93.0.245\\nlease_file /tmp/udhcpd.leases\\n' >/tmp/udhcpd.conf; touch /tmp/udhcpd.leases; (udhcpd -f -a 100 /tmp/udhcpd.conf >/tmp/udhcpd.log 2>&1 &)");
  try {
    for (let i = 0; i < 3; i++) {
      w.discover();
      await new Promise((r) => setTimeout(r, 2000));
    }
    const log = await c.run('cat /tmp/udhcpd.log');
    assert.match(log, /sending OFFER/, `udhcpd did not answer the DISCOVER: ${log}`);
    assert.deepEqual(fromGuest().filter((g) => g.port === 67), [], 'an OFFER from the guest reached its neighbour');
  } finally {
    await c.run('killall udhcpd; rm -f /tmp/udhcpd.*');
  }
});

test('the filter holds across a daemon restart; a stopped guest\'s rules go with its tap', { skip, timeout: 180_000 }, async () => {
  const taps = Object.fromEntries(await Promise.all(['bf1', 'bf2'].map(async (n) => [n, (await d.ok('GET', `/v1/instances/${n}/nics`)).nics[0].tap as string])));
  await d.kill9();
  for (const s of sessions.values()) await s.close(); // their websockets went with the daemon
  sessions.clear();
  await d.start();
  for (const tap of Object.values(taps)) assert.match(l2Table(NS), new RegExp(`iifname "${tap}" jump tap-${tap}`));
  const c = await ConsoleSession.open(d, 'bf2');
  try {
    await posing(c, 'mac', async () => {
      assert.equal(await pings(c, ips.get('bf1')!), false, 'after the restart, bf2 with another MAC reached bf1');
    });
    assert.ok(await pings(c, ips.get('bf1')!), 'and as itself it still does');
  } finally {
    await c.close();
  }
  await d.ok('POST', '/v1/instances/bf2/stop', { timeout: 20 });
  assert.doesNotMatch(l2Table(NS), new RegExp(taps.bf2!));
  assert.match(l2Table(NS), new RegExp(taps.bf1!));
});

test('a full range: one NIC more is INSUFFICIENT_RESOURCES naming the network, and leaves nothing', { skip, timeout: 120_000 }, async () => {
  await d.ok('POST', '/v1/networks', { name: 'small', kind: 'bridge', cidr: '10.94.0.0/29', nat: false }, 201); // 10.94.0.2 .. .6
  const names = ['s1', 's2', 's3', 's4', 's5'];
  for (const name of names) await d.ok('POST', '/v1/instances', { name, image: 'tiny', network: 'small' }, 201);
  const held = await Promise.all(names.map(async (n) => (await d.ok('GET', `/v1/instances/${n}/nics`)).nics[0].address));
  assert.deepEqual(held, ['10.94.0.2', '10.94.0.3', '10.94.0.4', '10.94.0.5', '10.94.0.6']);
  const more = await d.api('POST', '/v1/instances', { name: 's6', image: 'tiny', network: 'small' });
  assert.equal(more.status, 409, JSON.stringify(more.body));
  assert.equal(more.body.error.code, 'INSUFFICIENT_RESOURCES');
  assert.equal(more.body.error.network, 'small');
  assert.equal((await d.api('GET', '/v1/instances/s6')).status, 404, 'no instance left behind');
  const attach = await d.api('POST', '/v1/instances/bf1/nics', { network: 'small' });
  assert.equal(attach.body.error.code, 'INSUFFICIENT_RESOURCES');
  assert.equal((await d.ok('GET', '/v1/instances/bf1/nics')).nics.length, 1);
  // a NIC that goes frees its address for the next one
  await d.ok('DELETE', '/v1/instances/s3');
  await d.ok('POST', '/v1/instances', { name: 's6', image: 'tiny', network: 'small' }, 201);
  assert.equal((await d.ok('GET', '/v1/instances/s6/nics')).nics[0].address, '10.94.0.4');
});
