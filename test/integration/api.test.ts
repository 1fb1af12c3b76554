/** The API as a program sees it: OpenAPI, events, TCP behind a bearer token, the host and its accelerator. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import WebSocket from 'ws';
import { CLI, Daemon, newDataDir, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
const PORT = 20000 + Math.floor(Math.random() * 20000);
let d: Daemon;
useDaemon((x) => { d = x; }, { args: ['--listen', `127.0.0.1:${PORT}`] });

function tcp(path: string, token?: string, method = 'GET', body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    // the daemon's own self-signed certificate, made at its first start, as the CA (it names 127.0.0.1)
    const ca = readFileSync(join(d.dataDir, 'tls', 'server.crt'));
    const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const req = httpsRequest({ host: '127.0.0.1', port: PORT, path, method, ca, headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => { text += c.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

test('the unix socket and the token are for root only', { skip }, () => {
  assert.equal(statSync(d.socket).mode & 0o777, 0o600);
  const token = join(d.dataDir, 'token');
  assert.ok(existsSync(token));
  assert.equal(statSync(token).mode & 0o777, 0o600);
});

test('TCP is TLS only: plain HTTP gets no answer, the key is 0600', { skip }, async () => {
  assert.equal(statSync(join(d.dataDir, 'tls', 'server.key')).mode & 0o777, 0o600);
  const plain = await new Promise<string>((resolve) => {
    const req = request({ host: '127.0.0.1', port: PORT, path: '/v1/instances' }, (res) => resolve(`HTTP ${res.statusCode}`));
    req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    req.end();
  });
  assert.doesNotMatch(plain, /^HTTP 2/);
});

test('TCP requires the bearer token', { skip }, async () => {
  const none = await tcp('/v1/instances');
  assert.equal(none.status, 401);
  assert.equal(none.body.error.code, 'UNAUTHORIZED');
  const wrong = await tcp('/v1/instances', 'x'.repeat(64));
  assert.equal(wrong.status, 401);
  const token = readFileSync(join(d.dataDir, 'token'), 'utf8').trim();
  const ok = await tcp('/v1/instances', token);
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { instances: [] });
});

test('a named token over TCP: its role decides (403 FORBIDDEN), a revoked one is refused, and audit.log says who did what', { skip }, async () => {
  const made = await d.ok('POST', '/v1/tokens', { name: 'it-viewer', role: 'viewer' }, 201);
  assert.match(made.token, /^corral_/);
  assert.equal((await tcp('/v1/instances', made.token)).status, 200);
  const refused = await tcp('/v1/networks', made.token, 'POST', { name: 'itnet', cidr: '10.77.0.0/24' });
  assert.equal(refused.status, 403);
  assert.deepEqual({ code: refused.body.error.code, required: refused.body.error.required, role: refused.body.error.role }, { code: 'FORBIDDEN', required: 'admin', role: 'viewer' });
  await d.ok('DELETE', '/v1/tokens/it-viewer');
  const revoked = await tcp('/v1/instances', made.token);
  assert.equal(revoked.status, 401);
  assert.match(revoked.body.error.message, /^the bearer token was revoked at /);

  const file = join(d.dataDir, 'audit.log');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes(made.token), 'the secret is not in the audit log');
  const entries = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const pick = (e: Record<string, unknown>): unknown => ({ who: e.who, via: e.via, peer: e.peer, method: e.method, path: e.path, status: e.status, code: e.code });
  const seen = entries.map(pick);
  for (const want of [
    { who: 'unix-socket', via: 'unix', peer: null, method: 'POST', path: '/v1/tokens', status: 201, code: null },
    { who: 'it-viewer', via: 'tcp', peer: '127.0.0.1', method: 'POST', path: '/v1/networks', status: 403, code: 'FORBIDDEN' },
    { who: 'unix-socket', via: 'unix', peer: null, method: 'DELETE', path: '/v1/tokens/it-viewer', status: 200, code: null },
    { who: null, via: 'tcp', peer: '127.0.0.1', method: 'GET', path: '/v1/instances', status: 401, code: 'UNAUTHORIZED' },
  ]) assert.ok(seen.some((e) => JSON.stringify(e) === JSON.stringify(want)), `audit.log lacks ${JSON.stringify(want)}: ${JSON.stringify(seen)}`);
  // the database keeps the hash, never the secret
  const db = ['corral.db', 'corral.db-wal'].map((f) => join(d.dataDir, f)).filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
  assert.ok(db.includes(createHash('sha256').update(made.token).digest('hex')));
  assert.ok(!db.includes(made.token));
});

test('OpenAPI document lists the routes', { skip }, async () => {
  const r = await d.api('GET', '/openapi.json');
  assert.equal(r.status, 200);
  for (const p of ['/v1/instances', '/v1/instances/{name}', '/v1/instances/{name}/start', '/v1/instances/{name}/stop', '/v1/images', '/v1/host', '/v1/events']) {
    assert.ok(r.body.paths[p], `missing ${p}`);
  }
});

test('unknown routes are coded 404s', { skip }, async () => {
  const r = await d.api('GET', '/v1/nothing');
  assert.equal(r.status, 404);
  assert.equal(r.body.error.code, 'NOT_FOUND');
});

test('host show names the accelerator and why; KVM is chosen only if a guest really boots under it', { skip, timeout: 60_000 }, async () => {
  const r = await d.api('GET', '/v1/host');
  assert.equal(r.status, 200);
  assert.ok(['kvm', 'tcg'].includes(r.body.accelerator));
  assert.ok(r.body.acceleratorReason.length > 10);
  assert.match(r.body.qemu.version, /^\d+\.\d+/);
  assert.ok(r.body.cpus >= 1);
  assert.ok(r.body.memory.total > 0);
  if (r.body.accelerator === 'tcg' && existsSync('/dev/kvm')) {
    // /dev/kvm is there but not used: the reason must say what the probe saw.
    assert.match(r.body.acceleratorReason, /KVM/);
  }
  const cli = await d.cli(['host', 'show', '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.equal(JSON.parse(cli.stdout).accelerator, r.body.accelerator);
});

test('events stream state changes as server-sent events', { skip, timeout: 60_000 }, async () => {
  const seen: string[] = [];
  const req = request({ socketPath: d.socket, path: '/v1/events?since=0' });
  const done = new Promise<void>((resolve) => {
    req.on('response', (res) => {
      assert.equal(res.headers['content-type'], 'text/event-stream');
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString();
        for (const m of buf.matchAll(/^data: (.*)$/gm)) {
          const ev = JSON.parse(m[1]!);
          if (ev.type === 'instance.state') seen.push(`${ev.data.from}->${ev.data.to}`);
        }
        buf = buf.slice(buf.lastIndexOf('\n\n') + 2);
        if (seen.includes('running->stopped') || seen.includes('stopping->stopped')) resolve();
      });
    });
  });
  req.end();
  const c = await d.api('POST', '/v1/instances', { name: 'ev1', image: 'tiny', start: true });
  assert.equal(c.status, 201);
  assert.match(String(c.headers['server-timing']), /qemu;dur=/);
  await d.api('POST', '/v1/instances/ev1/kill', {});
  await done;
  req.destroy();
  assert.ok(seen.includes('stopped->starting'), seen.join(' '));
  assert.ok(seen.includes('starting->running'), seen.join(' '));
  await d.api('DELETE', '/v1/instances/ev1');
});

test('SIGTERM with event streams and a console open: the daemon exits within 5 s and tells its clients why', { skip, timeout: 120_000 }, async () => {
  const x = new Daemon(newDataDir());
  try {
    await x.start();
    await x.ok('POST', '/v1/instances', { name: 's1', image: 'tiny', memory: '128M', start: true }, 201);
    // a raw SSE client
    let sse = '';
    const sseEnded = new Promise<void>((resolve, reject) => {
      const req = request({ socketPath: x.socket, path: '/v1/events' }, (res) => {
        res.on('data', (c: Buffer) => { sse += c.toString(); });
        res.on('end', resolve);
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    // the console websocket
    const ws = new WebSocket(`ws+unix://${x.socket}:/v1/instances/s1/console`);
    const wsClosed = new Promise<number>((r) => ws.on('close', (code) => r(code)));
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    // `corral events`, once it has printed the replayed events
    const cli = spawn(process.execPath, [CLI, 'events', '--since', '0'], { env: x.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    cli.stderr.on('data', (c: Buffer) => { err += c.toString(); });
    const cliExit = new Promise<number | null>((r) => cli.on('close', (code) => r(code)));
    await new Promise<void>((r) => cli.stdout.on('data', (c: Buffer) => { out += c.toString(); r(); }));
    await waitFor(() => sse.includes(': connected'), 10_000, 'the raw SSE client to be subscribed'); // its stream is open too

    const t0 = Date.now();
    await x.stop();
    const took = Date.now() - t0;
    assert.ok(took < 5000, `the daemon took ${took} ms to exit`);
    await sseEnded;
    assert.match(sse, /event: daemon\.stopping\ndata: .*"signal":"SIGTERM"/);
    assert.equal(await wsClosed, 1001);
    assert.equal(await cliExit, 0, err);
    assert.match(out, /daemon\.stopping - \{"pid":\d+,"signal":"SIGTERM"\}\n$/);
    assert.match(err, /^the corral daemon is stopping; the event stream ended \(resume with: corral events --since \d+\)\n$/);
    assert.equal(existsSync(x.socket), false);
  } finally {
    await x.destroy();
  }
});

test('an old daemon exiting after a new one has taken the socket leaves the new socket alone', { skip, timeout: 120_000 }, async () => {
  const dir = newDataDir(false);
  const old = new Daemon(dir);
  const next = new Daemon(dir);
  try {
    await old.start();
    // Daemon.start removes the socket file first, as a new daemon does when the old one (stopping) no longer answers.
    await next.start();
    await old.stop();
    assert.ok(existsSync(next.socket), 'the new daemon\'s socket is gone');
    assert.equal((await next.api('GET', '/v1/instances')).status, 200);
  } finally {
    await old.kill9();
    await next.destroy();
  }
});
