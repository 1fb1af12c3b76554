/**
 * A controller's API built in-process over a private PostgreSQL, with no hosts: the cluster CA, a controller token
 * file (`tokenFile`, an admin) registered, the controller's certificate in a temporary folder. For the tests of its
 * routes (roles, the web console); `close` undoes it all.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ClusterEvents } from '../../../src/cluster/cluster-events.js';
import { EventFeed } from '../../../src/cluster/event-feed.js';
import { ClusterAudit } from '../../../src/cluster/cluster-audit.js';
import { ClusterInstances } from '../../../src/cluster/cluster-instances.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { ClusterSessions } from '../../../src/cluster/cluster-sessions.js';
import { ClusterTokens } from '../../../src/cluster/cluster-tokens.js';
import { buildControllerApi } from '../../../src/cluster/controller-api.js';
import { ensureControllerPair } from '../../../src/cluster/controller-tls.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { makeClusterCa } from '../../../src/cluster/pki.js';
import { startPostgres } from '../postgres.js';

export interface TestController {
  app: FastifyInstance;
  db: ClusterDb;
  tokens: ClusterTokens;
  /** a temporary folder of the test's own (removed by close) */
  dir: string;
  close(): Promise<void>;
}

const quiet = { info: () => undefined, warn: () => undefined };

/** `webRoot(dir)`: where the web console's files are, made under the test's folder before the API is built. */
export async function startTestController(tokenFile: string, opts: { webRoot?: (dir: string) => string } = {}): Promise<TestController> {
  const server = await startPostgres();
  const db = await openClusterDb(server.url);
  const dir = mkdtempSync(join(tmpdir(), 'corral-ctl-'));
  let app: FastifyInstance | undefined;
  const close = async (): Promise<void> => {
    await app?.close();
    await db.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const store = new ClusterStore(db.pool);
    const ca = await makeClusterCa();
    await store.initCa(ca);
    await store.registerApiToken('controller test', createHash('sha256').update(tokenFile).digest('hex'));
    const tokens = new ClusterTokens(db.pool);
    const events = new ClusterEvents(db.pool);
    app = await buildControllerApi({
      store, instances: new ClusterInstances(db.pool, { unreachableAfterMs: 15_000, policy: 'spread' }), tokens, sessions: new ClusterSessions(db.pool), audit: new ClusterAudit(db.pool),
      events, feed: new EventFeed(db.pool, events, quiet),
      ca, tls: await ensureControllerPair(dir, ca, '127.0.0.1'), ha: { leaseMs: 15_000, watchdogMs: 10_000 }, log: quiet,
      ...(opts.webRoot ? { webRoot: opts.webRoot(dir) } : {}),
    });
    return { app, db, tokens, dir, close };
  } catch (e) {
    await close();
    throw e;
  }
}
