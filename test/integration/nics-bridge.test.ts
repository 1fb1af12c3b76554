/**
 * Guests on bridge networks, with the daemon in its own network namespace: each guest's NIC is a tap on the
 * network's bridge and gets its address from the network's dnsmasq; two guests on one network ping each other,
 * a guest on another network reaches neither them nor their gateway; a NIC hot-plugged into a running guest
 * joins the other network; taps go when their NIC or VM goes; a network in use cannot be deleted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readlinkSync, rmSync } from 'node:fs';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';
import { l2Table, leased, pings } from './net-probes.js';

const skip = SKIP_NO_TINY;
const NS = `corral-nb-${process.pid}`;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });


/** `ip -n NS -o link show` lines, as the daemon's namespace sees its links. */
function links(): string {
  return execFileSync('ip', ['-n', NS, '-o', 'link', 'show'], { encoding: 'utf8' });
}

const sessions = new Map<string, ConsoleSession>();
const ips = new Map<string, string>();

test('guests on two bridge networks: DHCP from their network, taps on their bridge', { skip, timeout: 240_000 }, async () => {
  await d.ok('POST', '/v1/networks', { name: 'lana', kind: 'bridge', cidr: '10.91.0.0/24', nat: false }, 201);
  await d.ok('POST', '/v1/networks', { name: 'lanb', kind: 'bridge', cidr: '10.92.0.0/24', nat: false }, 201);
  const guests: Array<[string, string, string]> = [['ga1', 'lana', 'virtio-net'], ['ga2', 'lana', 'e1000'], ['gb1', 'lanb', 'rtl8139']];
  for (const [name, network, nicModel] of guests) {
    await d.ok('POST', '/v1/instances', { name, image: 'tiny', network, nicModel, start: true }, 201);
  }
  for (const [name, network] of guests) {
    await d.waitConsole(name, /corral-tiny ready/, 120_000);
    const c = await ConsoleSession.open(d, name);
    sessions.set(name, c);
    const ip = await leased(c);
    ips.set(name, ip);
    assert.match(ip, network === 'lana' ? /^10\.91\.0\./ : /^10\.92\.0\./);
    const nic = (await d.ok('GET', `/v1/instances/${name}/nics`)).nics[0];
    assert.equal(nic.network, network);
    assert.match(links(), new RegExp(`: ${nic.tap}: .* master crl-${network} `), `tap ${nic.tap} on crl-${network}`);
    // the address the guest took is the one dnsmasq leased to its MAC
    await d.ok('GET', `/v1/networks/${network}`);
    const again = (await d.ok('GET', `/v1/instances/${name}/nics`)).nics[0];
    assert.equal(again.ip, ip);
    // and the NIC's fixed address, reserved when it was made: the guests of one network hold the first ones
    assert.equal(again.address, ip);
  }
  const devs = (await d.ok('GET', '/v1/instances/ga1/devices')).devices;
  assert.match(devs.find((x: any) => x.kind === 'nic').dataPath, /-> tap ct[0-9a-f]{8}n0 -> bridge of network "lana"$/);
});

test('one network talks inside, not across: no ping to the other network\'s guest nor its gateway', { skip, timeout: 120_000 }, async () => {
  const a1 = sessions.get('ga1')!;
  const b1 = sessions.get('gb1')!;
  assert.ok(await pings(a1, ips.get('ga2')!), 'ga1 -> ga2 on lana');
  assert.ok(await pings(a1, '10.91.0.1'), 'ga1 -> its own gateway');
  // the guests have no default route (isolated networks); give them one through their own gateway, so only the
  // host's rules stand between the networks
  await a1.run('ip route replace default via 10.91.0.1 dev eth0; echo done');
  await b1.run('ip route replace default via 10.92.0.1 dev eth0; echo done');
  // and with forwarding on in the daemon's namespace, as on most hosts
  execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  assert.equal(await pings(a1, ips.get('gb1')!), false, 'ga1 must not reach gb1 on lanb');
  assert.equal(await pings(b1, ips.get('ga1')!), false, 'gb1 must not reach ga1 on lana');
  assert.equal(await pings(b1, '10.91.0.1'), false, 'gb1 must not reach lana\'s gateway');
});

test('a NIC hot-plugged into a running guest joins another network; detach removes its tap', { skip, timeout: 120_000 }, async () => {
  const b1 = sessions.get('gb1')!;
  const att = await d.ok('POST', '/v1/instances/gb1/nics', { network: 'lana', model: 'virtio-net', queues: 2 }, 201);
  const nic = att.nics[1];
  assert.equal(nic.id, 'net1');
  assert.match(links(), new RegExp(`: ${nic.tap}: .* master crl-lana `));
  const up = await b1.run('i=0; while [ $i -lt 50 ] && [ ! -e /sys/class/net/eth1 ]; do sleep 0.2; i=$((i+1)); done; ip link set eth1 up; udhcpc -i eth1 -s /etc/udhcpc.script -n -q -t 8 -T 1 >/dev/null 2>&1; ip -4 -o addr show eth1; echo "MQ=$(cut -c23 /sys/class/net/eth1/device/features)"', 60_000);
  // its fixed address, and the layer-2 filter let its DHCP through and holds its tap's rules
  assert.match(up, new RegExp(`inet ${nic.address.replace(/\./g, '\\.')}/`));
  assert.match(l2Table(NS), new RegExp(`iifname "${nic.tap}" jump tap-${nic.tap}`));
  // multi-queue: the device offers VIRTIO_NET_F_MQ (feature bit 22) to the guest, and QEMU holds the tap twice
  assert.match(up, /MQ=1\r?\n/, 'the guest sees a multi-queue virtio-net');
  const { pid } = await d.ok('GET', '/v1/instances/gb1');
  const tunFds = readdirSync(`/proc/${pid}/fd`).filter((f) => { try { return readlinkSync(`/proc/${pid}/fd/${f}`) === '/dev/net/tun'; } catch { return false; } });
  assert.equal(tunFds.length, 3, 'one queue for eth0, two for the hot-plugged multi-queue NIC');
  assert.ok(await pings(b1, ips.get('ga2')!), 'gb1 reaches ga2 through its new lana NIC');
  await d.ok('DELETE', '/v1/instances/gb1/nics/net1');
  assert.doesNotMatch(links(), new RegExp(`: ${nic.tap}[:@]`), 'the tap is gone');
  assert.doesNotMatch(l2Table(NS), new RegExp(nic.tap), 'and its rules with it');
  assert.match(await b1.run('ls /sys/class/net | tr \'\\n\' ,'), /^eth0,lo,/m);
});

test('vhost-net needs /dev/vhost-net; a network in use cannot be deleted; stopping a guest removes its tap', { skip, timeout: 120_000 }, async () => {
  const vh = await d.api('POST', '/v1/instances/ga1/nics', { network: 'lana', model: 'vhost-net' });
  assert.equal(vh.status, 400);
  assert.equal(vh.body.error.code, 'DEVICE_UNAVAILABLE');
  assert.match(vh.body.error.message, /\/dev\/vhost-net/);
  const inUse = await d.api('DELETE', '/v1/networks/lana');
  assert.equal(inUse.status, 409);
  assert.equal(inUse.body.error.code, 'NETWORK_IN_USE');
  assert.match(inUse.body.error.message, /ga1/);
  for (const c of sessions.values()) await c.close();
  const tap = (await d.ok('GET', '/v1/instances/ga1/nics')).nics[0].tap;
  assert.match(links(), new RegExp(`: ${tap}:`));
  await d.ok('POST', '/v1/instances/ga1/stop', { timeout: 20 });
  assert.doesNotMatch(links(), new RegExp(`: ${tap}:`), 'a stopped guest has no tap');
  // a start that fails after the taps were made (QEMU cannot open a volume removed behind Corral's back) leaves none
  const vol = await d.ok('POST', '/v1/volumes', { name: 'gone1', size: '16M' }, 201);
  await d.ok('POST', '/v1/instances', { name: 'gx', image: 'tiny', network: 'lana' }, 201);
  await d.ok('POST', '/v1/instances/gx/nics', { network: 'lanb', model: 'e1000' }, 201);
  await d.ok('POST', '/v1/instances/gx/disks', { volume: 'gone1' }, 201);
  rmSync(vol.path);
  const failed = await d.api('POST', '/v1/instances/gx/start', {});
  assert.equal(failed.status, 500, JSON.stringify(failed.body));
  assert.equal(failed.body.error.code, 'QEMU_FAILED');
  const gx = (await d.ok('GET', '/v1/instances/gx/nics')).nics;
  for (const n of gx) assert.doesNotMatch(links(), new RegExp(`: ${n.tap}:`), `no tap ${n.tap} after the failed start`);
  assert.equal((await d.ok('GET', '/v1/instances/gx')).state, 'stopped');
  for (const name of ['ga1', 'ga2', 'gb1', 'gx']) await d.ok('DELETE', `/v1/instances/${name}?force=true`);
  await d.ok('DELETE', '/v1/volumes/gone1');
  await d.ok('DELETE', '/v1/networks/lana');
  await d.ok('DELETE', '/v1/networks/lanb');
  assert.doesNotMatch(links(), /crl-lan|: ct[0-9a-f]{8}n/, 'no bridge, no tap left');
  assert.equal(l2Table(NS), '', 'no tap: no layer-2 filter');
});
