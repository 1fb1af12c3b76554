/**
 * Probes for network tests: servers in network namespaces that hand a token to whoever connects, an "outside"
 * host on a veth, and what a tiny guest runs to reach them (busybox nc and ping over its console). The console
 * echoes each command, so a probe's verdict is always a value the command line itself does not hold.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createNetns, deleteNetns, type ConsoleSession } from './harness.js';

const children: ChildProcess[] = [];

/** Kill every server started here and delete the outside namespaces (call from `after`). */
export function stopProbes(...namespaces: string[]): void {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const ns of namespaces) deleteNetns(ns);
}

/** A text no command line holds before the test makes it. */
export const token = (what: string): string => `${what}-${process.pid}-${Date.now()}`;

/** Run a node script in a namespace; resolves with the first line it prints (a port). */
export function inNs(ns: string, script: string): Promise<string> {
  const c = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  return new Promise((resolve, reject) => {
    let out = '';
    c.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    c.once('exit', (code) => reject(new Error(`${script} exited ${code} before printing: ${out}`)));
  });
}

/** A TCP server in namespace `ns` on `addr` (port `port`, or any) that sends `text` to whoever connects, then closes; its port. */
export async function tokenServer(ns: string, addr: string, text: string, port = 0): Promise<number> {
  const script = `const s = require('net').createServer((c) => c.end(${JSON.stringify(`${text}\n`)})); s.listen(${port}, ${JSON.stringify(addr)}, () => console.log(s.address().port));`;
  return Number(await inNs(ns, script));
}

/**
 * An outside host: namespace `outNs` joined to `ns` by a veth (`hostIf` on the `ns` side, with 192.0.2.2/24),
 * itself at 192.0.2.1: a server there is not on the host. Returns its address.
 */
export function plugOutside(ns: string, outNs: string, hostIf: string): string {
  createNetns(outNs);
  execFileSync('ip', ['-n', ns, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outNs]);
  execFileSync('ip', ['-n', ns, 'addr', 'add', '192.0.2.2/24', 'dev', hostIf]);
  execFileSync('ip', ['-n', ns, 'link', 'set', hostIf, 'up']);
  execFileSync('ip', ['-n', outNs, 'addr', 'add', '192.0.2.1/24', 'dev', 'eth0']);
  execFileSync('ip', ['-n', outNs, 'link', 'set', 'eth0', 'up']);
  return '192.0.2.1';
}

/** busybox nc from the guest: what the server sent, then NC=0 when it connected (NC=1: refused or timed out). */
export const probe = (c: ConsoleSession, host: string, port: number): Promise<string> => c.run(`nc -w 3 ${host} ${port} </dev/null; echo "NC=$?"`, 30_000);

/** Did a probe connect? */
export function connected(out: string): boolean {
  const m = /NC=(\d+)\r?\n/.exec(out);
  assert.ok(m, `no nc verdict in: ${out}`);
  return m[1] === '0';
}

/** Two pings from the guest; whether any came back. */
export async function pings(c: ConsoleSession, ip: string): Promise<boolean> {
  const out = await c.run(`ping -c 2 -W 2 ${ip} >/dev/null 2>&1; echo "PING=$?"`, 30_000);
  const m = /PING=(\d+)\r?\n/.exec(out);
  assert.ok(m, `no ping verdict in: ${out}`);
  return m[1] === '0';
}

/** Wait for the guest's DHCP lease on IFACE and return its IPv4 address. */
export async function leased(c: ConsoleSession, iface = 'eth0'): Promise<string> {
  const out = await c.run(`i=0; while [ $i -lt 100 ] && [ ! -e /run/udhcpc.${iface}.up ]; do sleep 0.2; i=$((i+1)); done; ip -4 -o addr show ${iface}`, 40_000);
  const m = /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out);
  assert.ok(m, `no address on ${iface}: ${out}`);
  return m[1]!;
}

/** The layer-2 filter as nft lists it in namespace `ns` ('' when there is no table). */
export function l2Table(ns: string): string {
  try {
    return execFileSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'table', 'bridge', 'corral_l2'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

/**
 * A neighbour on a bridge: namespace `nbNs` joined to `bridge` (in namespace `ns`) by a veth (`hostIf` the
 * bridge's port), its eth0 at `cidr`, its default route out of eth0 (so it can broadcast). Returns its address.
 */
export function plugNeighbour(ns: string, nbNs: string, bridge: string, hostIf: string, cidr: string): string {
  createNetns(nbNs);
  execFileSync('ip', ['-n', ns, 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', nbNs]);
  execFileSync('ip', ['-n', ns, 'link', 'set', hostIf, 'master', bridge, 'up']);
  execFileSync('ip', ['-n', nbNs, 'addr', 'add', cidr, 'dev', 'eth0']);
  execFileSync('ip', ['-n', nbNs, 'link', 'set', 'eth0', 'up']);
  execFileSync('ip', ['-n', nbNs, 'route', 'add', 'default', 'dev', 'eth0']);
  return cidr.split('/')[0]!;
}

/** A datagram a UdpWatch received: who sent it, from which port. */
export interface Datagram { from: string; port: number; size: number }

export interface UdpWatch {
  /** every datagram received so far */
  got: Datagram[];
  /** broadcast a DHCPDISCOVER (broadcast flag set) from the watched port to port 67, as a DHCP client does */
  discover(): void;
}

/** A UDP socket in namespace `ns` on 0.0.0.0:`port` (broadcasts too) that records every datagram it receives. */
export async function udpWatch(ns: string, port: number): Promise<UdpWatch> {
  const script = `
    const s = require('dgram').createSocket({ type: 'udp4', reuseAddr: true });
    const mac = require('os').networkInterfaces().eth0[0].mac.split(':').map((h) => parseInt(h, 16));
    s.on('message', (m, r) => console.log(JSON.stringify({ from: r.address, port: r.port, size: m.length })));
    s.bind(${port}, '0.0.0.0', () => { s.setBroadcast(true); console.log('{"ready":true}'); });
    process.stdin.on('data', () => {
      const p = Buffer.alloc(300);
      p.set([1, 1, 6, 0], 0); // BOOTREQUEST, Ethernet, 6-byte address, no hops
      require('crypto').randomFillSync(p, 4, 4); // xid
      p.writeUInt16BE(0x8000, 10); // broadcast flag: answer to 255.255.255.255
      p.set(mac, 28); // chaddr
      p.set([99, 130, 83, 99, 53, 1, 1, 255], 236); // magic cookie, DHCP message type DISCOVER, end
      s.send(p, 67, '255.255.255.255');
    });`;
  const c = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(c);
  const got: Datagram[] = [];
  let buf = '';
  let ready!: () => void;
  const up = new Promise<void>((resolve) => { ready = resolve; });
  c.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = JSON.parse(buf.slice(0, i)) as Datagram & { ready?: boolean };
      buf = buf.slice(i + 1);
      if (line.ready) ready();
      else got.push(line);
    }
  });
  await Promise.race([up, new Promise((_, reject) => c.once('exit', (code) => reject(new Error(`the UDP watch in ${ns} exited ${code}`))))]);
  return { got, discover: () => { c.stdin!.write('discover\n'); } };
}
