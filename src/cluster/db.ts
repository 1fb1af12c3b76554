/**
 * The controller's connection to the cluster's PostgreSQL: a pg.Pool opened within a bounded time, the schema
 * migrated (see migrations.ts) before anything else uses it. A database that cannot be reached, refuses the login
 * or does not exist is DATABASE_UNAVAILABLE, naming the URL without its password.
 */
import pg from 'pg';
import { CorralError } from '../core/errors.js';
import { migrate, type MigrateResult } from './migrations.js';
import { isUnavailable, reasonOf, redactUrl, unavailable } from './pg-errors.js';

export interface ClusterDb {
  pool: pg.Pool;
  /** the migration this open ran */
  schema: MigrateResult;
  /** end the pool's connections; twice is harmless */
  close(): Promise<void>;
}

export interface ClusterDbOptions {
  /** how long one connection attempt may take (default 10 s): the open and every later pool checkout */
  connectTimeoutMs?: number;
  /** the most connections the pool holds (default 10) */
  maxConnections?: number;
  /** pino-like: migrations applied (info), a pooled connection that failed while idle (warn) */
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
}

/** Open the pool, check that the database answers, migrate its schema; the pool is closed again on any failure. */
export async function openClusterDb(url: string, opts: ClusterDbOptions = {}): Promise<ClusterDb> {
  const pool = new pg.Pool({
    connectionString: url,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 10_000,
    max: opts.maxConnections ?? 10,
    keepAlive: true,
    application_name: 'corral-controller',
  });
  // an idle pooled connection that breaks (the server restarted) is an 'error' event: without a listener it would end the process
  pool.on('error', (e) => opts.log?.warn({ err: reasonOf(e, url) }, 'a pooled PostgreSQL connection failed'));
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw unavailable(e, url);
  }
  let schema: MigrateResult;
  try {
    schema = await migrate(client, undefined, opts.log);
  } catch (e) {
    client.release(true);
    await pool.end().catch(() => undefined);
    if (e instanceof CorralError) throw e;
    if (isUnavailable(e)) throw unavailable(e, url);
    throw new CorralError('INTERNAL', `migrating the cluster database at ${redactUrl(url)} failed: ${reasonOf(e, url)}`);
  }
  client.release();
  let closed = false;
  return {
    pool,
    schema,
    close: async () => {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
