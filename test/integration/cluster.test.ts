/**
 * Many hosts, first slice: PostgreSQL (private, started here), `corral cluster init`, two controllers over it, and
 * agents (full daemons, `corral agent`) that join with single-use tokens, pin the cluster CA, heartbeat over mutual
 * TLS and are listed by either controller with their state. Faults: a reused, expired, foreign or tampered token; a
 * host joining twice; a frozen agent (unreachable, then up again); controllers and PostgreSQL down while a guest
 * runs on an agent (nothing restarted); a removed host's certificate refused; a controller that cannot start. The
 * controllers' instance list is read from PostgreSQL: their own calls show there at once, a kill on the host itself
 * within a few heartbeats.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import pgLib from 'pg';
import { WebSocket } from 'ws';
import { Daemon, SKIP_NO_TINY, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, runCli } from './cluster-harness.js';
import { startPostgres, type TestPostgres } from '../unit/postgres.js';
import { makeClusterCa, makeKeyAndCsr, signHostCsr } from '../../src/cluster/pki.js';

const skip = SKIP_NO_TINY;
const pgClient = pgLib.Client;
let pg: TestPostgres;
let c1: Controller;
let c2: Controller;
const agents: Daemon[] = [];
/** the agents that joined, by host name */
const joined = new Map<string, Daemon>();
let firstToken = '';

/** One statement on the cluster's database, as an admin would run it by hand. */
async function sql(text: string): Promise<void> {
  const client = new pgClient({ connectionString: pg.url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

const ports = new Map<string, number>();

async function agent(name: string, join?: { url: string; token: string }): Promise<Daemon> {
  if (!ports.has(name)) ports.set(name, await freePort());
  const d = new Daemon(newDataDir(), [...(join ? ['--join', join.url, '--token', join.token] : []), '--name', name, '--listen', `127.0.0.1:${ports.get(name)}`], { CORRAL_HEARTBEAT_MS: '500', CORRAL_LOG_LEVEL: 'info' }, { command: 'agent' });
  agents.push(d);
  return d;
}

/** Start an agent that must fail: its exit code and output. */
async function failingAgent(d: Daemon): Promise<string> {
  await assert.rejects(d.start(), (e: Error) => /daemon exited 1/.test(e.message));
  return d.log;
}

async function hosts(c: Controller): Promise<any[]> {
  const r = await c.cli(['host', 'list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

async function waitHostState(c: Controller, name: string, state: string, timeoutMs = 30_000): Promise<any> {
  let h: any;
  await waitFor(async () => {
    h = (await hosts(c)).find((x) => x.name === name);
    return h?.state === state;
  }, timeoutMs, `host ${name} to be ${state}`, () => JSON.stringify(h));
  return h;
}

/** A websocket on a controller's console of NAME, open (the test holds it). */
function openConsole(c: Controller, name: string): Promise<WebSocket> {
  const env = c.cliEnv();
  const ws = new WebSocket(`wss://127.0.0.1:${c.port}/v1/instances/${name}/console`, { ca: readFileSync(env.CORRAL_TLS_CA!), headers: { authorization: `Bearer ${env.CORRAL_TOKEN}` } });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** The HTTP status a console upgrade with this token is refused with (0 if it opened). */
function consoleRefusal(c: Controller, name: string, token: string): Promise<number> {
  const env = c.cliEnv();
  const ws = new WebSocket(`wss://127.0.0.1:${c.port}/v1/instances/${name}/console`, { ca: readFileSync(env.CORRAL_TLS_CA!), headers: { authorization: `Bearer ${token}` } });
  return new Promise((resolve, reject) => {
    ws.once('open', () => { ws.close(); resolve(0); });
    ws.once('unexpected-response', (req, res) => { req.destroy(); resolve(res.statusCode ?? -1); });
    ws.once('error', reject);
  });
}

function newToken(c: Controller): Promise<string> {
  return c.cli(['cluster', 'join-token', '--json']).then((r) => {
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).token as string;
  });
}

before(async () => {
  if (skip) return;
  pg = await startPostgres();
  c1 = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '3000' });
  c2 = new Controller(pg.url, await freePort(), { CORRAL_UNREACHABLE_AFTER_MS: '3000' });
});

after(async () => {
  for (const a of agents) await a.destroy();
  await c1?.destroy();
  await c2?.destroy();
  await pg?.stop();
});

test('cluster init makes the CA and a first token once; a controller refuses an empty database and an unreachable one', { skip, timeout: 120_000 }, async () => {
  const early = await c1.runToExit();
  assert.equal(early.code, 1);
  assert.match(early.log, /CLUSTER_NOT_INITIALISED/);

  const init = await runCli(['cluster', 'init', '--database', pg.url, '--json'], {});
  assert.equal(init.code, 0, init.stderr);
  const made = JSON.parse(init.stdout);
  assert.match(made.joinToken, /^corral1\./);
  assert.match(made.caSha256, /^[0-9a-f]{64}$/);
  firstToken = made.joinToken;
  const again = await runCli(['cluster', 'init', '--database', pg.url], {});
  assert.equal(again.code, 1);
  assert.match(again.stderr, /CLUSTER_EXISTS/);

  const nowhere = new Controller(`postgres://postgres:s3cret@127.0.0.1:${await freePort()}/corral`, await freePort());
  try {
    const down = await nowhere.runToExit();
    assert.equal(down.code, 1);
    assert.match(down.log, /DATABASE_UNAVAILABLE/);
    assert.doesNotMatch(down.log, /s3cret/, 'the password is never printed');
  } finally {
    await nowhere.destroy();
  }
  await c1.start();
  await c2.start();
  const caFile = readFileSync(join(c1.dataDir, 'cluster-ca.crt'), 'utf8');
  assert.equal(caFile, readFileSync(join(c2.dataDir, 'cluster-ca.crt'), 'utf8'), 'both controllers serve with the one cluster CA');
  const bad = await runCli(['host', 'list'], { ...c1.cliEnv(), CORRAL_TOKEN: 'x'.repeat(64) });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /UNAUTHORIZED/);
});

test('agents join with single-use tokens and are listed by both controllers; bad tokens and a second join are refused, leaving nothing', { skip, timeout: 240_000 }, async () => {
  const a1 = await agent('a1', { url: c1.url, token: firstToken });
  await a1.start();
  joined.set('a1', a1);
  const id = JSON.parse(readFileSync(join(a1.dataDir, 'cluster', 'cluster.json'), 'utf8'));
  assert.equal(id.name, 'a1');
  const h1 = await waitHostState(c1, 'a1', 'up');
  assert.equal(h1.uuid, id.uuid);
  assert.ok(h1.capacity.cpus > 0 && h1.capacity.memory > 0, JSON.stringify(h1));
  assert.equal(h1.allocation.instances, 0);
  assert.match(h1.agentVersion, /^\d+\.\d+\.\d+/);
  assert.deepEqual((await hosts(c2)).map((h) => h.name), ['a1'], 'the second controller sees the same');

  // the same token again: used
  const reuse = await agent('a2', { url: c2.url, token: firstToken });
  assert.match(await failingAgent(reuse), /JOIN_TOKEN_REFUSED.*used already/);
  assert.equal(existsSync(join(reuse.dataDir, 'cluster')), false, 'no identity left');

  // a host name taken: refused before the token is spent
  const t2 = await newToken(c2);
  const twice = await agent('a1', { url: c1.url, token: t2 });
  assert.match(await failingAgent(twice), /HOST_EXISTS/);
  // an expired token
  const t3 = await newToken(c1);
  await sql(`UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE id = '${t3.split('.')[1]}'`);
  assert.match(await failingAgent(await agent('a3', { url: c1.url, token: t3 })), /JOIN_TOKEN_REFUSED.*expired/);
  // a token whose CA hash is not this cluster's: the agent sends nothing
  const parts = t2.split('.');
  const foreign = [...parts.slice(0, 3), 'f'.repeat(64)].join('.');
  assert.match(await failingAgent(await agent('a4', { url: c1.url, token: foreign })), /UNTRUSTED_PEER.*not the cluster this token is for/);
  // a wrong secret
  const wrong = [parts[0], parts[1], 'A'.repeat(43), parts[3]].join('.');
  assert.match(await failingAgent(await agent('a5', { url: c1.url, token: wrong })), /JOIN_TOKEN_REFUSED|INVALID_JOIN_TOKEN/);
  // the name-clash attempt spent nothing: t2 still joins a2
  const a2 = await agent('a2', { url: c2.url, token: t2 });
  await a2.start();
  joined.set('a2', a2);
  await waitHostState(c1, 'a2', 'up');
  assert.deepEqual((await hosts(c1)).map((h) => h.name), ['a1', 'a2']);
});

test('a frozen agent turns unreachable and comes back; an agent restarted without --join keeps its identity', { skip, timeout: 120_000 }, async () => {
  const a2 = joined.get('a2')!;
  a2.proc!.kill('SIGSTOP');
  try {
    await waitHostState(c1, 'a2', 'unreachable');
  } finally {
    a2.proc!.kill('SIGCONT');
  }
  await waitHostState(c2, 'a2', 'up');

  const a1 = joined.get('a1')!;
  const uuid = JSON.parse(readFileSync(join(a1.dataDir, 'cluster', 'cluster.json'), 'utf8')).uuid;
  await a1.stop();
  a1.extraArgs = ['--name', 'a1', '--listen', `127.0.0.1:${ports.get('a1')}`];
  await a1.start();
  const h = await waitHostState(c1, 'a1', 'up');
  assert.equal(h.uuid, uuid);
  const m = await c1.cli(['host', 'maintenance', 'a1', 'on', '--json']);
  assert.equal(m.code, 0, m.stderr);
  assert.equal(JSON.parse(m.stdout).state, 'maintenance');
  await waitHostState(c2, 'a1', 'maintenance');
  assert.equal((await c2.cli(['host', 'maintenance', 'a1', 'off'])).code, 0);
  await waitHostState(c1, 'a1', 'up');
});

test('a guest made on an agent directly is adopted by the cluster; controllers and PostgreSQL down for a while: it runs on, untouched; heartbeats resume after; deleted on the host, it is forgotten', { skip, timeout: 240_000 }, async () => {
  const a1 = joined.get('a1')!;
  await a1.ok('POST', '/v1/instances', { name: 'g1', image: 'tiny', memory: '128M' }, 201);
  await a1.ok('POST', '/v1/instances/g1/start', {});
  await a1.waitConsole('g1', /corral-tiny ready/);
  const pid = (await a1.ok('GET', '/v1/instances/g1')).pid;
  await waitFor(async () => (await hosts(c1)).find((h) => h.name === 'a1')?.allocation?.instances === 1, 20_000, 'the allocation report');
  // g1 was made on the agent directly: the cluster adopts it, once (either controller may hear of it first), as it
  // runs there: listed on a1, its vCPUs and memory reserved there
  const listedG1 = async (c: Controller): Promise<any> => JSON.parse((await c.cli(['list', '--json'])).stdout).instances.find((i: any) => i.name === 'g1');
  let row: any;
  await waitFor(async () => (row = await listedG1(c2))?.state === 'running', 20_000, 'g1 to be adopted', () => `${JSON.stringify(row)}\n${c1.log.slice(-1500)}`);
  assert.deepEqual([row.host, row.pid, row.memory], ['a1', pid, 128 * 1024 ** 2]);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((c1.log + c2.log).split('is adopted by the cluster').length - 1, 1, (c1.log + c2.log).slice(-3000));

  await c1.stop();
  await c2.stop();
  await pg.pause();
  await new Promise((r) => setTimeout(r, 8000));
  assert.equal((await a1.ok('GET', '/v1/instances/g1')).state, 'running');
  assert.match(await a1.guest('g1', 'echo still-$((40+2))'), /still-42/);
  await pg.resume();
  await c1.start();
  await c2.start();
  await waitHostState(c2, 'a1', 'up');
  const g = await a1.ok('GET', '/v1/instances/g1');
  assert.equal(g.pid, pid, 'the same QEMU');
  assert.equal(g.state, 'running');
  await waitFor(async () => (row = await listedG1(c1))?.state === 'running', 20_000, 'g1 listed again', () => JSON.stringify(row));
  assert.equal(row.pid, pid);
  assert.equal((await c1.cli(['show', 'g1', '--json'])).code, 0, 'forwarded to like any other');
  // deleted on the host directly: the cluster forgets it
  await a1.ok('POST', '/v1/instances/g1/kill', {});
  await a1.ok('DELETE', '/v1/instances/g1');
  await waitFor(async () => (await listedG1(c1)) === undefined, 20_000, 'g1 to be forgotten', () => c1.log.slice(-1500));
});

test('instances through the controllers: spread over the hosts, pinned, kept apart by anti-affinity atomically across controllers, forwarded, refused with what each host lacks', { skip, timeout: 300_000 }, async () => {
  const ok = async (c: Controller, args: string[]): Promise<any> => {
    const r = await c.cli([...args, '--json']);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim() ? JSON.parse(r.stdout) : null;
  };
  for (const n of ['p1', 'p2', 'p3', 'p4']) await ok(n === 'p2' ? c2 : c1, ['create', n, '--image', 'tiny', '--memory', '128M']);
  const listed = (await ok(c2, ['list'])).instances;
  assert.deepEqual(listed.map((i: any) => i.name), ['p1', 'p2', 'p3', 'p4']);
  const on = (h: string): string[] => listed.filter((i: any) => i.host === h).map((i: any) => i.name);
  assert.equal(on('a1').length, 2, JSON.stringify(listed));
  assert.equal(on('a2').length, 2, 'spread evens the hosts out');
  assert.equal((await joined.get(listed[0].host)!.ok('GET', `/v1/instances/${listed[0].name}`)).uuid, listed[0].uuid, 'the row is the agent\'s own instance');
  const text = await c1.cli(['list']);
  assert.match(text.stdout, /^NAME\s+HOST\s+STATE/);

  // pinned to a host and started there; every call about it is forwarded to that agent
  const q1 = await ok(c1, ['create', 'q1', '--image', 'tiny', '--memory', '128M', '--host', 'a2', '--start']);
  assert.equal(q1.host, 'a2');
  await joined.get('a2')!.waitConsole('q1', /corral-tiny ready/);
  const shown = await ok(c2, ['show', 'q1']);
  assert.equal(shown.state, 'running');
  assert.equal(shown.host, 'a2');
  assert.equal(shown.pid, (await joined.get('a2')!.ok('GET', '/v1/instances/q1')).pid);
  assert.match((await c1.cli(['host', 'remove', 'a2'])).stderr, /HOST_NOT_EMPTY/);
  // the console through a controller: the agent's, relayed both ways; held by one client at a time, as on a host
  const typed = await c1.cli(['console', 'q1'], 'echo via-controller-$((40+2))\n');
  assert.equal(typed.code, 0, typed.stderr);
  assert.match(typed.stdout, /via-controller-42/);
  const held = await openConsole(c2, 'q1');
  const busy = await c1.cli(['console', 'q1'], '');
  assert.match(busy.stderr, /CONSOLE_BUSY/);
  held.close();
  await waitFor(async () => !/CONSOLE_BUSY/.test((await c1.cli(['console', 'q1'], '')).stderr), 10_000, 'the console to be free again');
  assert.match((await c1.cli(['console', 'nosuch'], '')).stderr, /INSTANCE_NOT_FOUND/);
  assert.equal(await consoleRefusal(c1, 'q1', 'not-a-token'), 401, 'no console without a cluster token');
  await ok(c2, ['kill', 'q1']);
  assert.equal((await joined.get('a2')!.ok('GET', '/v1/instances/q1')).state, 'stopped');
  // the list is read from PostgreSQL: the controller's own calls show there at once (from the agent's reply)...
  const q1Listed = async (c: Controller): Promise<any> => (await ok(c, ['list'])).instances.find((i: any) => i.name === 'q1');
  assert.deepEqual(((r) => [r.state, r.host, r.pid, r.stale])(await q1Listed(c1)), ['stopped', 'a2', null, false]);
  // a resize through a controller: the cluster's reservation on that host follows, seen by the other controller
  const reservedOn = async (c: Controller, h: string): Promise<{ cpus: number; memory: number }> => (await ok(c, ['pool', 'show'])).hosts.find((x: any) => x.name === h).allocated;
  const small = await reservedOn(c2, 'a2');
  await ok(c1, ['set', 'q1', 'cpus=2', 'memory=192M']);
  const big = await reservedOn(c2, 'a2');
  assert.deepEqual([big.cpus - small.cpus, big.memory - small.memory], [1, 64 * 1024 ** 2]);
  await ok(c1, ['start', 'q1']);
  const running = await q1Listed(c2);
  assert.equal(running.state, 'running');
  assert.equal(running.pid, (await joined.get('a2')!.ok('GET', '/v1/instances/q1')).pid);
  assert.equal(running.rss, null, 'RSS is live only: corral show has it');
  assert.ok(running.uptime >= 0 && running.uptime < 120, `uptime from startedAt: ${running.uptime}`);
  // ...and what happens on the host without the controller (a kill through the agent's own socket) within a few beats
  await joined.get('a2')!.ok('POST', '/v1/instances/q1/kill', {});
  let seen: any;
  await waitFor(async () => (seen = await q1Listed(c2))?.state === 'stopped', 10_000, 'the list to show q1 stopped', () => JSON.stringify(seen));
  assert.equal(seen.pid, null);

  // refusals name the host, or what each one lacks
  assert.match((await c1.cli(['create', 'x1', '--image', 'tiny', '--host', 'nosuch'])).stderr, /HOST_NOT_FOUND/);
  assert.equal((await c1.cli(['host', 'maintenance', 'a1', 'on'])).code, 0);
  assert.match((await c1.cli(['create', 'x1', '--image', 'tiny', '--host', 'a1'])).stderr, /HOST_UNAVAILABLE: host "a1" is maintenance/);
  assert.equal((await c1.cli(['host', 'maintenance', 'a1', 'off'])).code, 0);
  const huge = await c1.cli(['create', 'x1', '--image', 'tiny', '--memory', '4000G']);
  assert.match(huge.stderr, /NO_HOST_FITS: no host can take 1 vCPU and 4000 GiB: a1 lacks memory .*; a2 lacks memory/);
  const bad = await c1.cli(['create', 'x1', '--image', 'nosuch-image']);
  assert.match(bad.stderr, /IMAGE_NOT_FOUND/);
  assert.deepEqual((await ok(c1, ['list'])).instances.map((i: any) => i.name), ['p1', 'p2', 'p3', 'p4', 'q1'], 'nothing half-made');

  // anti-affinity: four members asked for at once through both controllers; two hosts take two of them
  const tries = await Promise.all(['w1', 'w2', 'w3', 'w4'].map((n, i) => (i % 2 ? c2 : c1).cli(['create', n, '--image', 'tiny', '--memory', '64M', '--group', 'web', '--anti-affinity', '--json'])));
  const made = tries.filter((t) => t.code === 0).map((t) => JSON.parse(t.stdout));
  assert.equal(made.length, 2, tries.map((t) => t.stderr).join('\n'));
  assert.notEqual(made[0].host, made[1].host);
  for (const t of tries.filter((x) => x.code !== 0)) {
    const e = JSON.parse(t.stderr).error;
    assert.equal(e.code, 'NO_HOST_FITS');
    assert.deepEqual(e.hosts, ['a1 already holds an instance of group "web" (anti-affinity)', 'a2 already holds an instance of group "web" (anti-affinity)']);
  }

  // delete through a controller: gone there and on its host
  for (const i of (await ok(c1, ['list'])).instances) await ok(c2, ['delete', i.name]);
  assert.deepEqual((await ok(c1, ['list'])).instances, []);
  for (const a of ['a1', 'a2']) assert.deepEqual((await joined.get(a)!.ok('GET', '/v1/instances')).instances, []);
  const pool = await ok(c1, ['pool', 'show']);
  assert.deepEqual(pool.hosts.map((h: any) => [h.name, h.state, h.allocated.instances]), [['a1', 'up', 0], ['a2', 'up', 0]]);
});

test('a removed host is refused from then on (its certificate revoked); certificates from elsewhere are refused', { skip, timeout: 120_000 }, async () => {
  const rm = await c1.cli(['host', 'remove', 'a2', '--json']);
  assert.equal(rm.code, 0, rm.stderr);
  assert.match(JSON.parse(rm.stdout).revokedSerial, /^[0-9a-f]+$/i);
  assert.deepEqual((await hosts(c2)).map((h) => h.name), ['a1']);
  const a2 = joined.get('a2')!;
  await waitFor(() => /removed from the cluster/.test(a2.log), 20_000, 'the agent to learn it was removed', () => a2.log.slice(-2000));
  const show = await c1.cli(['host', 'show', 'a2']);
  assert.equal(show.code, 1);
  assert.match(show.stderr, /HOST_NOT_FOUND/);

  // the removed agent's own certificate, used by hand
  const dir = join(a2.dataDir, 'cluster');
  const pem = (f: string): string => readFileSync(join(dir, f), 'utf8');
  const revoked = await heartbeat(c1, { ca: pem('ca.crt'), cert: pem('agent.crt'), key: pem('agent.key') });
  assert.equal(revoked.status, 403);
  assert.match(revoked.body, /revoked/);
  // no client certificate; one from another CA with a host name of this cluster
  const none = await heartbeat(c1, { ca: pem('ca.crt') });
  assert.equal(none.status, 403);
  assert.match(none.body, /UNTRUSTED_PEER/);
  const otherCa = await makeClusterCa('another cluster');
  const { keyPem, csrPem } = await makeKeyAndCsr('a1');
  const forged = await signHostCsr(otherCa, csrPem, { host: 'a1', uuid: '00000000-0000-4000-8000-000000000000', ips: ['127.0.0.1'], role: 'agent' });
  const other = await heartbeat(c1, { ca: pem('ca.crt'), cert: forged.certPem, key: keyPem });
  assert.equal(other.status, 403);
  assert.match(other.body, /UNTRUSTED_PEER/);
  assert.equal((await hosts(c1)).find((h) => h.name === 'a1')?.state, 'up');
});

function heartbeat(c: Controller, tls: { ca: string; cert?: string; key?: string }): Promise<{ status: number; body: string }> {
  const body = JSON.stringify({ capacity: {}, allocation: {}, agentVersion: 'x' });
  return new Promise((resolve, reject) => {
    const req = request(`${c.url}/v1/cluster/heartbeat`, {
      method: 'POST', ca: tls.ca, ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}),
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => { text += d.toString(); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
