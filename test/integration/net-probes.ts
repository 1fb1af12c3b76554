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
