/**
 * A TCP API (token file's token + named tokens of each role) and a unix socket API over recording services, a real
 * token service on a temporary SQLite file and a real audit log: for the role and audit tests.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import type { Role } from '../../../src/core/tokens.js';
import { AuditLog } from '../../../src/services/audit.js';
import { TokenService } from '../../../src/services/tokens.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { recordingServices } from './recording-services.js';

export const LEGACY_TOKEN = 'L'.repeat(40);

export interface AuthSetup {
  dir: string;
  auditFile: string;
  tokens: TokenService;
  /** the token service's clock: set `offsetMs` to move it ahead */
  clock: { offsetMs: number };
  /** what the services were asked, "service.method" */
  calls: string[];
  tcp: FastifyInstance;
  unix: FastifyInstance;
  /** a secret of each role: tokens named viewer1, operator1, admin1 */
  secret: Record<Role, string>;
  close(): Promise<void>;
}

export const bearer = (secret: string): Record<string, string> => ({ authorization: `Bearer ${secret}` });

export async function authSetup(real: Partial<Services> = {}): Promise<AuthSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'corral-auth-'));
  const store = new SqliteStore(join(dir, 'corral.db'));
  const clock = { offsetMs: 0 };
  const tokens = new TokenService(store, { now: () => new Date(Date.now() + clock.offsetMs) });
  const auditFile = join(dir, 'audit.log');
  const audit = new AuditLog(auditFile);
  const calls: string[] = [];
  const svc = recordingServices(calls, { tokens, ...real });
  const tcp = await buildApi(svc, { token: LEGACY_TOKEN, audit });
  const unix = await buildApi(svc, { audit });
  const secret = {} as Record<Role, string>;
  for (const role of ['viewer', 'operator', 'admin'] as const) secret[role] = tokens.create({ name: `${role}1`, role }).token;
  return {
    dir, auditFile, tokens, clock, calls, tcp, unix, secret,
    close: async () => {
      await tcp.close();
      await unix.close();
      audit.close();
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A test body run over a new setup, closed after it whatever happens. */
export function withSetup(fn: (s: AuthSetup) => Promise<void>): () => Promise<void> {
  return async () => {
    const s = await authSetup();
    try {
      await fn(s);
    } finally {
      await s.close();
    }
  };
}
