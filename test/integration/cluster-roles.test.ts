/**
 * Named tokens and roles through a cluster: two controllers over one PostgreSQL and a simulated agent of one host
 * (the fake hypervisor: no QEMU), driven with the CLI as a user would (`corral token`, `corral audit`). A token
 * made on one controller works on the other with its role; a viewer cannot create, an operator runs instances but
 * makes no join tokens and removes no host; a revoke on one controller refuses the token on the other; an expired
 * token is refused; and `corral audit` through either controller shows who did what through both. Needs
 * PostgreSQL, not the tiny image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Controller, SimAgent, freePortRange, runCli, twoControllers, type CliResult } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

let server: TestPostgres;
let c1: Controller;
let c2: Controller;
let sim: SimAgent;

before(async () => {
  ({ server, c1, c2 } = await twoControllers());
  sim = new SimAgent(c1, 1, await freePortRange(1), ['--name-prefix', 'fake', '--cpus', '4', '--memory', '8G'], { CORRAL_HEARTBEAT_MS: '500' });
  await sim.start(60_000);
});

after(async () => {
  await sim?.destroy();
  await c1?.destroy();
  await c2?.destroy();
  await server?.stop();
});

/** The CLI against a controller with a named token's secret instead of the controller's token file. */
const as = (c: Controller, secret: string, args: string[]): Promise<CliResult> => runCli(args, { ...c.cliEnv(), CORRAL_TOKEN: secret });

function ok(r: CliResult, what: string): any {
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r.stdout.trim() ? JSON.parse(r.stdout) : null;
}

function refused(r: CliResult, line: RegExp): void {
  assert.equal(r.code, 1, r.stdout);
  assert.match(r.stderr, line);
}

test('tokens and roles across two controllers, and the audit of what each token did', { timeout: 180_000 }, async () => {
  // a viewer, made on controller 1 with its token file: listed on controller 2, reads there, cannot create
  const watcher = ok(await c1.cli(['token', 'create', 'watcher', '--role', 'viewer', '--json']), 'create watcher');
  assert.deepEqual([watcher.name, watcher.role, watcher.status], ['watcher', 'viewer', 'active']);
  const listed = ok(await c2.cli(['token', 'list', '--json']), 'token list').tokens;
  assert.deepEqual(listed.map((t: any) => [t.name, t.role, t.status]), [['watcher', 'viewer', 'active']]);
  assert.ok(!JSON.stringify(listed).includes(watcher.token), 'the list never shows a secret');
  assert.deepEqual(ok(await as(c2, watcher.token, ['host', 'list', '--json']), 'viewer: host list').map((h: any) => h.name), ['fake-001']);
  assert.deepEqual(ok(await as(c2, watcher.token, ['list', '--json']), 'viewer: list').instances, []);
  refused(await as(c2, watcher.token, ['create', 'web1', '--image', 'tiny', '--memory', '64M']),
    /^error: FORBIDDEN: POST \/v1\/instances needs the operator role; the token "watcher" has the viewer role$/m);
  refused(await as(c1, watcher.token, ['token', 'list']), /FORBIDDEN: GET \/v1\/tokens needs the admin role/);

  // an operator, made on controller 2: runs an instance through controller 1, on the host; no join tokens, no host removal
  const ops = ok(await c2.cli(['token', 'create', 'ops', '--role', 'operator', '--json']), 'create ops');
  const made = ok(await as(c1, ops.token, ['create', 'web1', '--image', 'tiny', '--memory', '64M', '--json']), 'operator: create');
  assert.equal(made.host, 'fake-001');
  assert.equal(ok(await as(c2, ops.token, ['start', 'web1', '--json']), 'operator: start').state, 'running');
  refused(await as(c1, ops.token, ['cluster', 'join-token']), /FORBIDDEN: POST \/v1\/cluster\/join-tokens needs the admin role; the token "ops" has the operator role/);
  refused(await as(c2, ops.token, ['host', 'remove', 'fake-001']), /FORBIDDEN: DELETE \/v1\/hosts\/:name needs the admin role; the token "ops" has the operator role/);
  refused(await as(c2, ops.token, ['host', 'maintenance', 'fake-001', 'on']), /FORBIDDEN: POST \/v1\/hosts\/:name\/maintenance needs the admin role/);
  ok(await as(c2, ops.token, ['delete', 'web1', '--force', '--json']), 'operator: delete');
  assert.deepEqual(ok(await c1.cli(['list', '--json']), 'list').instances, []);
  assert.equal(ok(await c1.cli(['host', 'show', 'fake-001', '--json']), 'host show').state, 'up', 'the host is still there, in no maintenance');

  // a revoke on controller 1 refuses the token on controller 2 at its next request
  ok(await c1.cli(['token', 'revoke', 'watcher', '--json']), 'revoke');
  refused(await as(c2, watcher.token, ['list']), /UNAUTHORIZED: the bearer token was revoked at \S+; ask an admin for a new one/);

  // an expired token is refused (its expiry moved into the past in the database: no waiting)
  const brief = ok(await c1.cli(['token', 'create', 'brief', '--role', 'admin', '--expires', '90m', '--json']), 'create brief');
  ok(await as(c2, brief.token, ['host', 'list', '--json']), 'brief: before it expires');
  const db = new pg.Client({ connectionString: server.url });
  await db.connect();
  try {
    await db.query("UPDATE named_tokens SET expires_at = now() - interval '1 second' WHERE name = 'brief'");
  } finally {
    await db.end();
  }
  refused(await as(c2, brief.token, ['host', 'list']), /UNAUTHORIZED: the bearer token expired at \S+; ask an admin for a new one/);
  const statuses = ok(await c2.cli(['token', 'list', '--json']), 'token list').tokens.map((t: any) => [t.name, t.status]);
  assert.deepEqual(statuses, [['brief', 'expired'], ['ops', 'active'], ['watcher', 'revoked']]);

  // the audit, through either controller, shows what was done through both: who, what, how it ended
  const entries = ok(await c2.cli(['audit', '--limit', '200', '--json']), 'audit').entries as any[];
  const seen = entries.map((e) => [e.who, e.method, e.path, e.status, e.code]);
  const expect = [
    [/^join token \S+$/, 'POST', '/v1/cluster/join', 201, null],
    ['token-file', 'POST', '/v1/tokens', 201, null],
    ['watcher', 'POST', '/v1/instances', 403, 'FORBIDDEN'],
    ['watcher', 'GET', '/v1/tokens', 403, 'FORBIDDEN'],
    ['ops', 'POST', '/v1/instances', 201, null],
    ['ops', 'POST', '/v1/instances/web1/start', 200, null],
    ['ops', 'POST', '/v1/cluster/join-tokens', 403, 'FORBIDDEN'],
    ['ops', 'DELETE', '/v1/hosts/fake-001', 403, 'FORBIDDEN'],
    ['ops', 'DELETE', '/v1/instances/web1', 200, null],
    ['token-file', 'DELETE', '/v1/tokens/watcher', 200, null],
    [null, 'GET', '/v1/instances', 401, 'UNAUTHORIZED'],
    [null, 'GET', '/v1/hosts', 401, 'UNAUTHORIZED'],
  ];
  let at = -1;
  for (const [who, method, path, status, code] of expect) {
    const i = seen.findIndex((s, j) => j > at && (who instanceof RegExp ? who.test(String(s[0])) : s[0] === who) && s[1] === method && s[2] === path && s[3] === status && s[4] === code);
    assert.ok(i > at, `in order in the audit: ${String(who)} ${method} ${path} ${status}\n${seen.map((s) => s.join(' ')).join('\n')}`);
    at = i;
  }
  assert.ok(!seen.some((s) => s[2] === '/v1/cluster/heartbeat'), 'accepted heartbeats are not audited');
  assert.ok(!seen.some((s) => s[1] === 'GET' && s[3] === 200), 'reads are not audited');
  const created = entries.find((e) => e.who === 'ops' && e.path === '/v1/instances');
  assert.deepEqual([created.role, created.resource, created.peer, created.via], ['operator', 'web1', '127.0.0.1', 'tcp']);
  // the same log through controller 1, as a table; the operator may not read it
  const table = await c1.cli(['audit', '--limit', '5']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /^TIME\s+WHO\s+ROLE\s+FROM\s+METHOD\s+PATH\s+STATUS\s+ERROR\s+MS$/m);
  assert.match(table.stdout, /token-file\s+admin\s+127\.0\.0\.1\s+POST\s+\/v1\/tokens\s+201/);
  refused(await as(c1, ops.token, ['audit']), /FORBIDDEN: GET \/v1\/audit needs the admin role; the token "ops" has the operator role/);
});
