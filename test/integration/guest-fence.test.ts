/**
 * From inside a guest on the user-mode network (slirp), with the daemon in its own network namespace: a server
 * on the host's 127.0.0.1 is out of reach through 10.0.2.2 (slirp's alias for the host's loopback), while the
 * guest still gets its DHCP address, reaches a server outside the host through slirp's outbound NAT, and
 * serves a host client through a port forward.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createNetns, deleteNetns, ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';

const skip = SKIP_NO_TINY;
const NS = `corral-gf-${process.pid}`;
/** an "outside" host on a veth from the daemon's namespace: a server that is not on the host itself */
const OUT_NS = `corral-gfo-${process.pid}`;
const OUT_IP = '192.0.2.1';
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });

const token = (what: string): string => `${what}-${process.pid}-${Date.now()}`;
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
  deleteNetns(OUT_NS);
});

/** Run a node script in a namespace; resolves with the first line it prints (a port). */
function inNs(ns: string, script: string): Promise<string> {
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

/** A TCP server in namespace `ns` on `addr` that sends `text` to whoever connects, then closes; its port. */
async function tokenServer(ns: string, addr: string, text: string): Promise<number> {
  const script = `const s = require('net').createServer((c) => c.end(${JSON.stringify(`${text}\n`)})); s.listen(0, ${JSON.stringify(addr)}, () => console.log(s.address().port));`;
  return Number(await inNs(ns, script));
}

/** A free TCP port on 127.0.0.1 in the daemon's namespace. */
function freePort(): Promise<number> {
  return inNs(NS, "const s = require('net').createServer(); s.listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); });").then(Number);
}

/** What an HTTP GET from the daemon's namespace answers. */
function fetchInNs(url: string): Promise<string> {
  return inNs(NS, `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => console.log(t.trim()), (e) => console.log('ERR ' + e.message));`);
}

/** The outside host: a namespace joined to the daemon's by a veth, the daemon's namespace routing to it. */
function plugOutside(): void {
  createNetns(OUT_NS);
  execFileSync('ip', ['-n', NS, 'link', 'add', 'gfout0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', OUT_NS]);
  execFileSync('ip', ['-n', NS, 'addr', 'add', '192.0.2.2/24', 'dev', 'gfout0']);
  execFileSync('ip', ['-n', NS, 'link', 'set', 'gfout0', 'up']);
  execFileSync('ip', ['-n', OUT_NS, 'addr', 'add', `${OUT_IP}/24`, 'dev', 'eth0']);
  execFileSync('ip', ['-n', OUT_NS, 'link', 'set', 'eth0', 'up']);
}

// the console echoes the command, so what a probe proves is only ever a token the command line does not hold
const probe = (c: ConsoleSession, host: string, port: number): Promise<string> => c.run(`nc -w 3 ${host} ${port} </dev/null; echo "NC=$?"`, 30_000);

test('user network: the host loopback is fenced off; DHCP, outbound NAT and port forwards still work', { skip, timeout: 300_000 }, async () => {
  plugOutside();
  const secret = token('host-loopback');
  const secretPort = await tokenServer(NS, '127.0.0.1', secret);
  const outside = token('outside');
  const outsidePort = await tokenServer(OUT_NS, '0.0.0.0', outside);
  const fwd = await freePort();

  await d.ok('POST', '/v1/instances', { name: 'gf', image: 'tiny', forwards: [`tcp:${fwd}:8080`], start: true }, 201);
  await d.waitConsole('gf', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'gf');
  try {
    const addr = await c.run('i=0; while [ $i -lt 100 ] && [ ! -e /run/udhcpc.eth0.up ]; do sleep 0.2; i=$((i+1)); done; ip -4 -o addr show eth0', 40_000);
    assert.match(addr, /inet 10\.0\.2\.15\/24/, addr);

    // positive control: the same probe reaches a server outside the host through slirp's NAT
    assert.match(await probe(c, OUT_IP, outsidePort), new RegExp(outside));
    // the host's loopback service, through slirp's host alias: nothing comes back
    const fenced = await probe(c, '10.0.2.2', secretPort);
    assert.match(fenced, /NC=\d+/, fenced);
    assert.doesNotMatch(fenced, new RegExp(secret), 'the guest reached a server on the host\'s 127.0.0.1');
    // a forward the user asked for still carries host -> guest
    const served = token('guest');
    await c.run(`mkdir -p /tmp/www && echo ${served} > /tmp/www/index.html && httpd -p 8080 -h /tmp/www && echo started`);
    assert.equal(await fetchInNs(`http://127.0.0.1:${fwd}/index.html`), served);
  } finally {
    await c.close();
  }
  await d.ok('DELETE', '/v1/instances/gf?force=true');
});
