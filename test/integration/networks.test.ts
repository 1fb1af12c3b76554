/**
 * Bridge networks for real, without touching the host: the daemon runs inside a fresh network namespace, and
 * "guests" are further namespaces joined to its bridges by veth pairs, asking for addresses with busybox
 * udhcpc. Checks the bridge, dnsmasq, the nftables table, DHCP, isolation between networks (even with
 * ip_forward on and guests routing on purpose), NAT out of the host, refusals that leave nothing, adoption of
 * dnsmasq across a daemon kill -9, and that delete removes everything.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNetns, Daemon, deleteNetns, newDataDir, REPO, waitFor } from './harness.js';

const skip = ((): string | false => {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  for (const [bin, args, pkg] of [['ip', ['-V'], 'iproute2'], ['nft', ['--version'], 'nftables'], ['dnsmasq', ['--version'], 'dnsmasq-base'], ['busybox', ['true'], 'busybox-static']] as const) {
    if (spawnSync(bin, [...args], { stdio: 'ignore' }).status !== 0) return `${bin} (Debian package ${pkg}) is not installed`;
  }
  if (!existsSync('/dev/net/tun')) return '/dev/net/tun is missing';
  return false;
})();

const tag = `cit${process.pid % 100000}`;
const NS = `${tag}-d`; // the daemon's "host"
const G = { a1: `${tag}-a1`, a2: `${tag}-a2`, b1: `${tag}-b1`, out: `${tag}-o` };
const A = { name: 'neta', cidr: '10.91.0.0/24', gw: '10.91.0.1', br: 'crl-neta' };
const B = { name: 'netb', cidr: '10.92.0.0/24', gw: '10.92.0.1', br: 'crl-netb' };
const OUTSIDE = { host: '198.51.100.1', peer: '198.51.100.2' };

let d: Daemon;
let work: string;
const children: ChildProcess[] = [];

/** Run a command inside a namespace; throws with its stderr on failure. */
function nsx(ns: string, cmd: string, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Exit status of a command inside a namespace. */
function nsStatus(ns: string, cmd: string, ...args: string[]): number {
  return spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'ignore', timeout: 20_000 }).status ?? -1;
}

const ping = (from: string, to: string): boolean => nsStatus(from, 'busybox', 'ping', '-c', '1', '-W', '2', to) === 0;

function links(ns: string): Array<{ ifname: string; flags: string[]; addr_info?: Array<{ family: string; local: string; prefixlen: number }> }> {
  return JSON.parse(nsx(ns, 'ip', '-j', 'addr', 'show')) as never;
}

const crlLinks = (): string[] => links(NS).map((l) => l.ifname).filter((n) => n.startsWith('crl-')).sort();

function nftTable(): string | null {
  const r = spawnSync('ip', ['netns', 'exec', NS, 'nft', 'list', 'table', 'inet', 'corral'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : null;
}

/** Make a guest namespace with eth0 = one end of a veth whose other end (HOSTIF) joins BRIDGE in the daemon's namespace. */
function guest(ns: string, hostIf: string, bridge: string): void {
  createNetns(ns);
  execFileSync('ip', ['-n', NS, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'dev', hostIf, 'master', bridge, 'up']);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
}

/** busybox udhcpc in the guest; the script applies the address and, when offered, the default route. */
function dhcp(ns: string, hostname: string): { ip: string; router: string } {
  const out = join(work, `${ns}.lease`);
  execFileSync('ip', ['netns', 'exec', ns, 'env', `LEASE_OUT=${out}`, 'busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-t', '8', '-T', '1', '-x', `hostname:${hostname}`, '-s', join(work, 'udhcpc.sh')], { stdio: 'ignore', timeout: 30_000 });
  const [ip = '', router = ''] = readFileSync(out, 'utf8').trim().split(' ');
  return { ip, router };
}

function mac(ns: string): string {
  return (JSON.parse(nsx(ns, 'ip', '-j', 'link', 'show', 'eth0')) as Array<{ address: string }>)[0]!.address;
}

function dnsmasqPids(dataDir: string): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv[0]?.endsWith('dnsmasq') && argv.some((a) => a.startsWith(`--dhcp-leasefile=${dataDir}/`));
    } catch {
      return false;
    }
  });
}

async function json(args: string[]): Promise<any> {
  const r = await d.cli([...args, '--json']);
  assert.equal(r.code, 0, `corral ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A refusal: exit 1, the code on stderr, and nothing left behind (records, bridges, firewall as before). */
async function refused(args: string[], code: RegExp): Promise<void> {
  const records = readdirSync(join(d.dataDir, 'networks')).sort();
  const bridges = crlLinks();
  const table = nftTable();
  const r = await d.cli(args);
  assert.equal(r.code, 1, `corral ${args.join(' ')} should fail: ${r.stdout}`);
  assert.match(r.stderr, code);
  assert.deepEqual(readdirSync(join(d.dataDir, 'networks')).sort(), records, 'no record left');
  assert.deepEqual(crlLinks(), bridges, 'no bridge left');
  assert.equal(nftTable(), table, 'firewall unchanged');
}

before(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'corral-net-it-'));
  chmodSync(work, 0o755);
  writeFileSync(join(work, 'udhcpc.sh'), [
    '#!/bin/sh',
    'case "$1" in',
    '  bound|renew)',
    '    ip addr flush dev "$interface"',
    '    ip addr add "$ip/$mask" dev "$interface"',
    '    r="${router%% *}"',
    '    if [ -n "$r" ]; then ip route replace default via "$r" dev "$interface"; fi',
    '    echo "$ip $r" > "$LEASE_OUT";;',
    'esac',
    'exit 0',
    '',
  ].join('\n'));
  chmodSync(join(work, 'udhcpc.sh'), 0o755);
  createNetns(NS);
  // an "outside" network beyond the host: reachable from guests only through NAT (it has no route back)
  createNetns(G.out);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'vout', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', G.out]);
  execFileSync('ip', ['-n', NS, 'addr', 'add', `${OUTSIDE.host}/24`, 'dev', 'vout']);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'vout', 'up']);
  execFileSync('ip', ['-n', G.out, 'addr', 'add', `${OUTSIDE.peer}/24`, 'dev', 'eth0']);
  execFileSync('ip', ['-n', G.out, 'link', 'set', 'eth0', 'up']);
  d = new Daemon(newDataDir(false), [], {}, { netns: NS });
  await d.start();
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  if (d) await d.destroy();
  for (const ns of [...Object.values(G), NS]) deleteNetns(ns);
  if (work) rmSync(work, { recursive: true, force: true });
});

test('create a NAT and an isolated bridge network: bridge with the gateway, dnsmasq, nft rules', { skip, timeout: 60_000 }, async () => {
  const b = await json(['network', 'create', B.name, '--kind', 'bridge', '--cidr', B.cidr, '--no-nat']);
  assert.equal(b.nat, false);
  assert.equal(b.dns, false);

  // dnsmasq cannot start (the DNS port is taken on the host; B serves no DNS): the bridge, the rules and the
  // record are undone, and the firewall is B's alone again
  const squatter = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', "require('dgram').createSocket({ type: 'udp4', reuseAddr: false }).bind(53, '0.0.0.0')"], { stdio: 'ignore' });
  children.push(squatter);
  await waitFor(() => /^\s*\d+: 00000000:0035 /m.test(nsx(NS, 'cat', '/proc/net/udp')), 10_000, 'the squatter to bind udp port 53');
  await refused(['network', 'create', 'dnsfail', '--cidr', '10.99.0.0/24'], /NETWORK_FAILED: dnsmasq .*failed: .*(Address already in use|address in use)/i);
  squatter.kill('SIGKILL');
  assert.equal(dnsmasqPids(d.dataDir).length, 1, 'only B\'s dnsmasq runs');

  const a = await json(['network', 'create', A.name, '--cidr', A.cidr]);
  assert.deepEqual({ kind: a.kind, cidr: a.cidr, gateway: a.gateway, nat: a.nat, dns: a.dns, bridge: a.bridge, dhcp: a.dhcp },
    { kind: 'bridge', cidr: A.cidr, gateway: A.gw, nat: true, dns: true, bridge: A.br, dhcp: { start: '10.91.0.10', end: '10.91.0.254' } });

  for (const n of [A, B]) {
    const l = links(NS).find((x) => x.ifname === n.br);
    assert.ok(l, `${n.br} exists in the namespace`);
    assert.ok(l.flags.includes('UP'));
    assert.deepEqual(l.addr_info?.filter((x) => x.family === 'inet').map((x) => `${x.local}/${x.prefixlen}`), [`${n.gw}/24`]);
    const shown = await json(['network', 'show', n.name]);
    assert.equal(shown.status.bridge.exists, true);
    const pid = shown.status.dnsmasq.pid as number;
    assert.ok(pid > 0, 'dnsmasq runs');
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(argv.includes(`--interface=${n.br}`));
    assert.ok(argv.includes(`--dhcp-leasefile=${join(d.dataDir, 'networks', n.name, 'leases')}`));
    assert.equal(execFileSync('ip', ['netns', 'identify', String(pid)], { encoding: 'utf8' }).trim(), NS, 'dnsmasq runs in the daemon\'s namespace');
  }
  assert.equal(spawnSync('ip', ['link', 'show', 'dev', A.br], { stdio: 'ignore' }).status !== 0, true, 'the host itself has no such bridge');

  const table = nftTable();
  assert.ok(table, 'table inet corral exists');
  assert.match(table, /iifname "crl-neta" oifname "crl-\*" drop/);
  assert.match(table, /iifname "crl-netb" drop/);
  assert.match(table, /ip saddr 10\.91\.0\.0\/24 ip daddr != 10\.91\.0\.0\/24 oifname != "crl-\*" masquerade/);
  assert.doesNotMatch(table, /10\.92\.0\.0\/24 .*masquerade/);
  assert.equal(nsx(NS, 'cat', '/proc/sys/net/ipv4/ip_forward').trim(), '1', 'forwarding on for the NAT network');

  const list = await d.cli(['network', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+KIND\s+CIDR\s+GATEWAY\s+NAT\s+BRIDGE$/m);
  assert.match(list.stdout, /^default\s+user\s+-\s+-\s+yes\s+-$/m);
  assert.match(list.stdout, /^neta\s+bridge\s+10\.91\.0\.0\/24\s+10\.91\.0\.1\s+yes\s+crl-neta$/m);
  assert.match(list.stdout, /^netb\s+bridge\s+10\.92\.0\.0\/24\s+10\.92\.0\.1\s+no\s+crl-netb$/m);
});

test('bad input is refused with coded errors and leaves nothing', { skip, timeout: 120_000 }, async () => {
  await refused(['network', 'create', 'x1', '--cidr', '10.95.0.1/24'], /INVALID_SPEC: cidr: .*network address/);
  await refused(['network', 'create', 'x1', '--cidr', 'fd00::/64'], /INVALID_SPEC: cidr:/);
  await refused(['network', 'create', 'x1', '--cidr', '10.95.0.0/30'], /INVALID_SPEC: cidr: .*\/8 to \/29/);
  await refused(['network', 'create', 'x1', '--cidr', '127.0.0.0/8'], /INVALID_SPEC: cidr:/);
  await refused(['network', 'create', 'x1'], /INVALID_SPEC: cidr:/);
  await refused(['network', 'create', 'x1', '--cidr', '10.91.0.0/16'], /NETWORK_CONFLICT: .*network "neta"/);
  await refused(['network', 'create', 'x1', '--cidr', '10.92.0.128/25'], /NETWORK_CONFLICT: .*network "netb"/);
  await refused(['network', 'create', 'x1', '--cidr', '198.51.100.0/24'], /NETWORK_CONFLICT: .*198\.51\.100\.\d+\/24 .*vout|NETWORK_CONFLICT: .*dev vout/);
  for (const name of ['../x', 'A', 'x_y', 'crl-neta/..', 'x-', 'a.b', 'a'.repeat(64)]) await refused(['network', 'create', name, '--cidr', '10.96.0.0/24'], /INVALID_SPEC: name:/);
  await refused(['network', 'create', 'u1', '--kind', 'user', '--cidr', '10.96.0.0/24'], /INVALID_SPEC: cidr:/);
  await refused(['network', 'create', 'u1', '--kind', 'user', '--no-nat'], /INVALID_SPEC: nat:/);
  await refused(['network', 'create', 'default', '--kind', 'user'], /ALREADY_EXISTS: .*built in/);
  await refused(['network', 'create', 'neta', '--cidr', '10.97.0.0/24'], /ALREADY_EXISTS/);
  await refused(['network', 'delete', 'default'], /INVALID_SPEC: name: .*built in/);
  await refused(['network', 'delete', 'nope'], /NETWORK_NOT_FOUND/);
  await refused(['network', 'show', 'nope'], /NETWORK_NOT_FOUND/);
  const extra = await d.api('POST', '/v1/networks', { name: 'x2', cidr: '10.98.0.0/24', bogus: 1 });
  assert.equal(extra.status, 400);
  assert.equal(extra.body.error.field, 'bogus');
  const badKind = await d.api('POST', '/v1/networks', { name: 'x2', kind: 'vlan', cidr: '10.98.0.0/24' });
  assert.equal(badKind.status, 400);
  const doc = await d.api('GET', '/openapi.json');
  for (const path of ['/v1/networks', '/v1/networks/{name}']) assert.ok(doc.body.paths[path], `OpenAPI lacks ${path}`);

  // a host interface of the bridge's name that is not a bridge: refused, and left alone
  execFileSync('ip', ['-n', NS, 'link', 'add', 'crl-clash', 'type', 'veth', 'peer', 'name', 'clash-peer']);
  await refused(['network', 'create', 'clash', '--cidr', '10.99.0.0/24'], /NETWORK_CONFLICT: host interface crl-clash exists and is not a bridge/);
  execFileSync('ip', ['-n', NS, 'link', 'del', 'crl-clash']);

});

test('guests get leases; one network talks inside, not across, even with forwarding on; NAT goes out', { skip, timeout: 120_000 }, async () => {
  guest(G.a1, 'va1', A.br);
  guest(G.a2, 'va2', A.br);
  guest(G.b1, 'vb1', B.br);
  const a1 = dhcp(G.a1, 'guest-a1');
  const a2 = dhcp(G.a2, 'guest-a2');
  const b1 = dhcp(G.b1, 'guest-b1');
  assert.match(a1.ip, /^10\.91\.0\.\d+$/);
  assert.match(a2.ip, /^10\.91\.0\.\d+$/);
  assert.match(b1.ip, /^10\.92\.0\.\d+$/);
  assert.equal(a1.router, A.gw, 'NAT network: the gateway is the router');
  assert.equal(b1.router, '', 'isolated network: no router offered');
  assert.equal(nsx(G.b1, 'ip', 'route', 'show', 'default').trim(), '', 'no default route in the isolated guest');
  assert.equal(nsx(NS, 'cat', '/proc/sys/net/ipv4/ip_forward').trim(), '1');

  assert.ok(ping(G.a1, a2.ip), 'A1 pings A2 (same network)');
  assert.ok(ping(G.a1, A.gw), 'A1 pings its own gateway');
  assert.ok(ping(G.a1, OUTSIDE.peer), 'A1 reaches the outside through NAT');
  // B1 routes towards A on purpose: only the firewall stands in the way
  execFileSync('ip', ['-n', G.b1, 'route', 'add', 'default', 'via', B.gw]);
  assert.ok(!ping(G.a1, b1.ip), 'A1 cannot ping B1');
  assert.ok(!ping(G.b1, a1.ip), 'B1 cannot ping A1');
  assert.ok(!ping(G.a1, B.gw), 'A1 cannot ping B\'s gateway');
  assert.ok(!ping(G.b1, A.gw), 'B1 cannot ping A\'s gateway');
  assert.ok(!ping(G.b1, OUTSIDE.peer), 'the isolated network does not get out');
  assert.ok(!ping(G.a1, OUTSIDE.host), 'guests do not reach the host on its other addresses');

  const shown = await json(['network', 'show', A.name]);
  const leases = shown.leases as Array<{ mac: string; ip: string; hostname: string | null }>;
  assert.deepEqual(leases.map((l) => l.ip).sort(), [a1.ip, a2.ip].sort());
  assert.deepEqual(leases.find((l) => l.mac === mac(G.a1))?.hostname, 'guest-a1');
  assert.deepEqual(shown.status.bridge.ports, ['va1', 'va2']);
  const words = await d.cli(['network', 'show', A.name]);
  assert.match(words.stdout, /^leases:\n\s+MAC\s+IP\s+HOSTNAME\s+EXPIRES$/m);
  assert.match(words.stdout, new RegExp(`${mac(G.a2)}\\s+${a2.ip.replace(/\./g, '\\.')}\\s+guest-a2`));
  assert.equal((await json(['network', 'show', B.name])).leases[0].ip, b1.ip);
});

test('daemon kill -9 and restart: dnsmasq adopted (same pid), rules loaded again', { skip, timeout: 60_000 }, async () => {
  const before = { a: (await json(['network', 'show', A.name])).status.dnsmasq.pid, b: (await json(['network', 'show', B.name])).status.dnsmasq.pid };
  await d.kill9();
  // while the daemon is down someone flushes the table: now A1 does reach B1 (the test's routes are real)
  nsx(NS, 'nft', 'delete', 'table', 'inet', 'corral');
  const b1 = readFileSync(join(work, `${G.b1}.lease`), 'utf8').split(' ')[0]!;
  assert.ok(ping(G.a1, b1), 'without the rules A1 reaches B1');
  await d.start();
  const after = { a: (await json(['network', 'show', A.name])).status.dnsmasq.pid, b: (await json(['network', 'show', B.name])).status.dnsmasq.pid };
  assert.deepEqual(after, before, 'the same dnsmasq processes');
  assert.deepEqual(dnsmasqPids(d.dataDir).sort(), [before.a, before.b].sort(), 'not started twice');
  assert.ok(nftTable(), 'rules restored');
  assert.ok(!ping(G.a1, b1), 'isolation is back');
  await waitFor(() => ping(G.a1, A.gw), 5000, 'A1 still reaches its gateway');
});

test('after a "reboot" (bridge, dnsmasq and rules gone) the daemon makes network B again; guests get leases', { skip, timeout: 60_000 }, async () => {
  const oldPid = (await json(['network', 'show', B.name])).status.dnsmasq.pid as number;
  await d.kill9();
  process.kill(oldPid, 'SIGKILL');
  execFileSync('ip', ['-n', NS, 'link', 'del', B.br]);
  nsx(NS, 'nft', 'delete', 'table', 'inet', 'corral');
  await d.start();
  const shown = await json(['network', 'show', B.name]);
  assert.equal(shown.status.bridge.exists, true);
  assert.equal(shown.status.bridge.up, true);
  assert.deepEqual(shown.status.bridge.addresses, [`${B.gw}/24`]);
  assert.ok(shown.status.dnsmasq.running);
  assert.notEqual(shown.status.dnsmasq.pid, oldPid);
  assert.match(nftTable() ?? '', /iifname "crl-netb" drop/);
  // the guest's cable goes back into the new bridge, and DHCP answers again
  execFileSync('ip', ['-n', NS, 'link', 'set', 'dev', 'vb1', 'master', B.br]);
  const b1 = dhcp(G.b1, 'guest-b1');
  assert.match(b1.ip, /^10\.92\.0\.\d+$/);
  assert.ok(!ping(G.a1, b1.ip), 'still isolated');
});

test('taps for NICs: made and joined to the bridge (multi-queue when asked), listed, deleted; failures leave none', { skip, timeout: 60_000 }, async () => {
  // the tap module runs inside the daemon's namespace, as the NIC service will call it through the daemon
  const script = join(work, 'taps.mjs');
  writeFileSync(script, `
    const t = await import(${JSON.stringify(join(REPO, 'dist/src/network/tap.js'))});
    const out = {};
    const err = async (fn) => { try { await fn(); return null; } catch (e) { return { code: e.code, message: e.message }; } };
    await t.createTap('ct-t0', '${A.br}');
    await t.createTap('ct-t1', '${A.br}', { multiQueue: true });
    await t.createTap('ct-t0', '${A.br}');
    out.listed = await t.listTaps('ct-');
    out.notTap = await err(() => t.createTap('vout', '${A.br}'));
    out.noBridge = await err(() => t.createTap('ct-t2', 'crl-missing'));
    out.badName = await err(() => t.createTap('Bad_Name', '${A.br}'));
    out.afterFailures = (await t.listTaps('ct-')).map((x) => x.ifname);
    await t.deleteTap('ct-t0');
    await t.deleteTap('ct-t0');
    out.deleteNotTap = await err(() => t.deleteTap('vout'));
    out.left = (await t.listTaps('ct-')).map((x) => x.ifname);
    process.stdout.write(JSON.stringify(out));
  `);
  const out = JSON.parse(nsx(NS, process.execPath, script));
  assert.deepEqual(out.listed, [
    { ifname: 'ct-t0', master: A.br, up: true, multiQueue: false },
    { ifname: 'ct-t1', master: A.br, up: true, multiQueue: true },
  ]);
  assert.equal(out.notTap.code, 'NETWORK_CONFLICT');
  assert.equal(out.noBridge.code, 'NETWORK_FAILED');
  assert.match(out.noBridge.message, /^ip link set dev ct-t2 master crl-missing up failed: /);
  assert.equal(out.badName.code, 'INVALID_SPEC');
  assert.deepEqual(out.afterFailures, ['ct-t0', 'ct-t1'], 'a failed create leaves no tap');
  assert.equal(out.deleteNotTap.code, 'NETWORK_CONFLICT');
  assert.deepEqual(out.left, ['ct-t1']);
  assert.ok(links(NS).some((l) => l.ifname === 'vout'), 'the veth that is not a tap was left alone');
  assert.deepEqual((await json(['network', 'show', A.name])).status.bridge.ports, ['ct-t1', 'va1', 'va2']);
});

test('delete removes the bridge, dnsmasq, the rules and the record', { skip, timeout: 60_000 }, async () => {
  const pidA = (await json(['network', 'show', A.name])).status.dnsmasq.pid as number;
  const r = await d.cli(['network', 'delete', A.name]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'network neta: deleted\n');
  assert.deepEqual(crlLinks(), [B.br]);
  await waitFor(() => !existsSync(`/proc/${pidA}`) || readFileSync(`/proc/${pidA}/stat`, 'utf8').includes(') Z'), 5000, 'dnsmasq of neta to exit');
  const table = nftTable();
  assert.ok(table);
  assert.doesNotMatch(table, /crl-neta/);
  assert.doesNotMatch(table, /masquerade/);
  assert.equal(existsSync(join(d.dataDir, 'networks', A.name)), false);
  assert.deepEqual(await json(['network', 'delete', B.name]), { deleted: B.name });
  assert.deepEqual(crlLinks(), []);
  assert.equal(nftTable(), null, 'no bridge network: no table');
  assert.deepEqual(dnsmasqPids(d.dataDir), []);
  assert.deepEqual(readdirSync(join(d.dataDir, 'networks')), []);
  assert.deepEqual((await json(['network', 'list'])).networks.map((n: { name: string }) => n.name), ['default']);
  const types = (await d.events()).map((e) => e.type);
  for (const t of ['network.created', 'network.deleted', 'host.ip_forward.enabled']) assert.ok(types.includes(t), t);
});
