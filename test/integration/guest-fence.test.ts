/**
 * From inside a guest on the user-mode network (slirp), with the daemon in its own network namespace: a server
 * on the host's 127.0.0.1 is out of reach through 10.0.2.2 (slirp's alias for the host's loopback), while the
 * guest still gets its DHCP address, reaches a server outside the host through slirp's outbound NAT, and
 * serves a host client through a port forward.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon } from './harness.js';
import { inNs, leased, plugOutside, probe, stopProbes, token, tokenServer } from './net-probes.js';

const skip = SKIP_NO_TINY;
const NS = `corral-gf-${process.pid}`;
/** an "outside" host on a veth from the daemon's namespace: a server that is not on the host itself */
const OUT_NS = `corral-gfo-${process.pid}`;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });

after(() => stopProbes(OUT_NS));

/** A free TCP port on 127.0.0.1 in the daemon's namespace. */
function freePort(): Promise<number> {
  return inNs(NS, "const s = require('net').createServer(); s.listen(0, '127.0.0.1', () => { console.log(s.address().port); s.close(); });").then(Number);
}

/** What an HTTP GET from the daemon's namespace answers. */
function fetchInNs(url: string): Promise<string> {
  return inNs(NS, `fetch(${JSON.stringify(url)}).then((r) => r.text()).then((t) => console.log(t.trim()), (e) => console.log('ERR ' + e.message));`);
}

test('user network: the host loopback is fenced off; DHCP, outbound NAT and port forwards still work', { skip, timeout: 300_000 }, async () => {
  const OUT_IP = plugOutside(NS, OUT_NS, 'gfout0');
  const secret = token('host-loopback');
  const secretPort = await tokenServer(NS, '127.0.0.1', secret);
  const outside = token('outside');
  const outsidePort = await tokenServer(OUT_NS, '0.0.0.0', outside);
  const fwd = await freePort();

  await d.ok('POST', '/v1/instances', { name: 'gf', image: 'tiny', forwards: [`tcp:${fwd}:8080`], start: true }, 201);
  await d.waitConsole('gf', /corral-tiny ready/);
  const c = await ConsoleSession.open(d, 'gf');
  try {
    assert.equal(await leased(c), '10.0.2.15');

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
