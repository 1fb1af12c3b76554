/** `corral token` and `corral audit`: the compiled CLI against a real API (token service, audit log) on a unix socket. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import { AuditLog } from '../../../src/services/audit.js';
import { TokenService } from '../../../src/services/tokens.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { recordingServices } from '../api/recording-services.js';
import { auditTable, tokenTable } from '../../../src/cli/tokens.js';
import { runCli } from './fake-api.js';

let dir = '';
let store: SqliteStore;
let audit: AuditLog;
let app: FastifyInstance;
const env = (): Record<string, string> => ({ CORRAL_DATA_DIR: dir });

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'corral-cli-tokens-'));
  store = new SqliteStore(join(dir, 'corral.db'));
  audit = new AuditLog(join(dir, 'audit.log'));
  app = await buildApi(recordingServices([], { tokens: new TokenService(store) } as Partial<Services>), { audit });
  await app.listen({ path: join(dir, 'corral.sock') });
});

after(async () => {
  await app.close();
  audit.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

test('token create prints the token once (and where it goes on stderr); the default is no expiry', async () => {
  const r = await runCli(['token', 'create', 'ci', '--role', 'operator'], env());
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^name:\s+ci$/m);
  assert.match(r.stdout, /^role:\s+operator$/m);
  assert.match(r.stdout, /^status:\s+active$/m);
  assert.match(r.stdout, /^expiresAt:\s+never$/m);
  assert.match(r.stdout, /^token:\s+corral_[A-Za-z0-9_-]{43}$/m);
  assert.equal(r.stderr, 'keep the token now: it cannot be shown again (revoke it with: corral token revoke ci)\n');
  const j = await runCli(['token', 'create', 'deploy', '--role', 'viewer', '--expires', '30d', '--json'], env());
  assert.equal(j.code, 0, j.stderr);
  const made = JSON.parse(j.stdout) as { name: string; role: string; expiresAt: string; token: string };
  assert.equal(made.role, 'viewer');
  assert.ok(Math.abs(Date.parse(made.expiresAt) - (Date.now() + 30 * 86_400_000)) < 60_000, made.expiresAt);
  assert.match(made.token, /^corral_/);
});

test('token create: a role not among the three is a usage error; a bad expiry or a taken name is the API\'s error', async () => {
  const role = await runCli(['token', 'create', 'x', '--role', 'root'], env());
  assert.equal(role.code, 1);
  assert.match(role.stderr, /option '--role <role>' argument 'root' is invalid\. Allowed choices are viewer, operator, admin/);
  const noRole = await runCli(['token', 'create', 'x'], env());
  assert.equal(noRole.code, 1);
  assert.match(noRole.stderr, /required option '--role <role>' not specified/);
  const expiry = await runCli(['token', 'create', 'x', '--role', 'viewer', '--expires', 'soon'], env());
  assert.equal(expiry.code, 1);
  assert.match(expiry.stderr, /^error: INVALID_SPEC: expires: "soon" is neither a duration nor a date/);
  await runCli(['token', 'create', 'taken', '--role', 'viewer'], env());
  const taken = await runCli(['token', 'create', 'taken', '--role', 'admin', '--json'], env());
  assert.equal(taken.code, 1);
  assert.equal(JSON.parse(taken.stderr).error.code, 'ALREADY_EXISTS');
});

test('token list: a table without secrets; --json the API JSON; revoke marks it revoked', async () => {
  await runCli(['token', 'create', 'listed', '--role', 'admin', '--expires', '2099-01-01'], env());
  const r = await runCli(['token', 'revoke', 'listed'], env());
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^token listed: revoked at \d{4}-\d\d-\d\dT/);
  const list = await runCli(['token', 'list'], env());
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^NAME\s+ROLE\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED$/m);
  assert.match(list.stdout, /^listed\s+admin\s+revoked\s+\S+\s+2099-01-01T00:00:00\.000Z\s+-$/m);
  assert.doesNotMatch(list.stdout, /corral_/);
  const json = await runCli(['token', 'ls', '--json'], env());
  const tokens = (JSON.parse(json.stdout) as { tokens: Array<Record<string, unknown>> }).tokens;
  assert.ok(tokens.length >= 2);
  assert.ok(tokens.every((t) => !('token' in t) && !('hash' in t)));
  const missing = await runCli(['token', 'revoke', 'nope'], env());
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'error: TOKEN_NOT_FOUND: no token named "nope"\n');
});

test('audit: the latest entries as a table, or the API JSON; --limit bounds them', async () => {
  await runCli(['token', 'create', 'audited', '--role', 'viewer'], env());
  const r = await runCli(['audit', '--limit', '2'], env());
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.trimEnd().split('\n');
  assert.match(rows[0]!, /^TIME\s+WHO\s+ROLE\s+FROM\s+METHOD\s+PATH\s+STATUS\s+ERROR\s+MS$/);
  assert.equal(rows.length, 3);
  assert.match(rows[2]!, /^\S+Z\s+unix-socket\s+admin\s+unix\s+POST\s+\/v1\/tokens\s+201\s+-\s+[\d.]+$/);
  const j = await runCli(['audit', '--json'], env());
  const entries = (JSON.parse(j.stdout) as { entries: Array<{ path: string; status: number; resource: string }> }).entries;
  assert.ok(entries.some((e) => e.path === '/v1/tokens/nope' && e.status === 404 && e.resource === 'nope'));
  const bad = await runCli(['audit', '--limit', 'all'], env());
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /expected a whole number/);
});

test('the tables read what the API sends: never, dashes for nulls, the peer when there is one', () => {
  assert.match(tokenTable([{ name: 'a', role: 'viewer', status: 'active', createdAt: 'C', expiresAt: null, lastUsedAt: null, revokedAt: null }]), /^a\s+viewer\s+active\s+C\s+never\s+-$/m);
  const line = auditTable([{ time: 'T', who: null, role: null, via: 'tcp', peer: '10.0.0.5', method: 'GET', path: '/v1/x', resource: null, status: 401, code: 'UNAUTHORIZED', ms: 0.4 }]);
  assert.match(line, /^T\s+-\s+-\s+10\.0\.0\.5\s+GET\s+\/v1\/x\s+401\s+UNAUTHORIZED\s+0\.4$/m);
});
