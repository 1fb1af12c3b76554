/** `corral token create|list|revoke`: named API tokens for the TCP API, and `corral audit`: the audit log's latest entries. */
import { Option, type Command } from 'commander';
import type { AuditEntry, CreatedToken, Token } from '../api/schemas-auth.js';
import type { ApiClient } from './client.js';
import { wholeNumber } from './instances.js';
import { fields, keyValues, orDash, printJson, printLines, table } from './format.js';

const enc = encodeURIComponent;

export function tokenTable(list: Token[]): string {
  return table(
    ['NAME', 'ROLE', 'STATUS', 'CREATED', 'EXPIRES', 'LAST USED'],
    list.map((t) => [t.name, t.role, t.status, t.createdAt, t.expiresAt ?? 'never', orDash(t.lastUsedAt)]),
  );
}

export function createdToken(t: CreatedToken): string {
  const { token, ...rest } = t;
  return keyValues([...fields(rest, { expiresAt: (v) => (v === null ? 'never' : String(v)) }), ['token', token]]);
}

export function auditTable(list: AuditEntry[]): string {
  return table(
    ['TIME', 'WHO', 'ROLE', 'FROM', 'METHOD', 'PATH', 'STATUS', 'ERROR', 'MS'],
    list.map((e) => [e.time, orDash(e.who), orDash(e.role), e.peer ?? e.via, e.method, e.path, String(e.status), orDash(e.code), String(e.ms)]),
  );
}

export function registerTokenCommands(program: Command, client: () => ApiClient): void {
  const token = program
    .command('token')
    .alias('tokens')
    .description('API tokens for the TCP API (admin only): viewer reads, operator runs VMs and volumes, admin also the host');

  token
    .command('create')
    .description('create a token and print its secret, this once (the daemon keeps only a hash); use it as CORRAL_TOKEN with CORRAL_URL')
    .argument('<name>', 'token name (a-z, 0-9 and -)')
    .addOption(new Option('--role <role>', 'what it may do: viewer (read), operator (instances, their devices and consoles, volumes), admin (also the host, networks, images, tokens)').choices(['viewer', 'operator', 'admin']).makeOptionMandatory())
    .option('--expires <when>', 'a duration from now (90m, 12h, 30d, 2w) or a date (2026-12-31, at 00:00 UTC; or 2026-12-31T18:00:00Z); default: never expires')
    .option('--json', 'print the API JSON (its "token" is the secret)')
    .action(async (name: string, o: { role: string; expires?: string; json?: boolean }) => {
      const body: Record<string, unknown> = { name, role: o.role };
      if (o.expires !== undefined) body.expires = o.expires;
      const res = await client().call<CreatedToken>('POST', '/v1/tokens', body);
      if (o.json) printJson(res);
      else printLines(createdToken(res));
      process.stderr.write(`keep the token now: it cannot be shown again (revoke it with: corral token revoke ${res.name})\n`);
    });

  token
    .command('list')
    .alias('ls')
    .description('list tokens: role, status (active, expired, revoked), created, expires, last used; never a secret')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ tokens: Token[] }>('GET', '/v1/tokens');
      if (o.json) printJson(res);
      else printLines(tokenTable(res.tokens ?? []));
    });

  token
    .command('revoke')
    .alias('rm')
    .description('revoke a token: refused from now on (its name can then be given to a new token)')
    .argument('<name>', 'token name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<Token>('DELETE', `/v1/tokens/${enc(name)}`);
      if (o.json) printJson(res);
      else printLines(`token ${res.name}: revoked at ${orDash(res.revokedAt)}`);
    });

  program
    .command('audit')
    .description('the latest entries of the audit log (admin): state-changing and refused API requests, who made them, how they ended')
    .option('--limit <n>', 'how many entries, the latest (1..10000)', wholeNumber, 50)
    .option('--json', 'print the API JSON')
    .action(async (o: { limit: number; json?: boolean }) => {
      const res = await client().call<{ entries: AuditEntry[] }>('GET', `/v1/audit?limit=${o.limit}`);
      if (o.json) printJson(res);
      else printLines(auditTable(res.entries ?? []));
    });
}
