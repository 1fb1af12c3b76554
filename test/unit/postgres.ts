/**
 * A private PostgreSQL server for tests (unit and integration): a fresh data dir under the system's temp dir,
 * owned by the `postgres` user when the tests run as root (initdb and the server refuse to run as root), trust
 * authentication, listening on a free TCP port of 127.0.0.1 only, its unix socket inside the temp dir; a database
 * `corral` made in it. Nothing depends on an earlier run: every start makes a new dir and picks a new port.
 * pause() stops the server keeping its data (an outage), resume() starts it again on the same port. A server a
 * test forgot to stop is stopped (immediately) and its dir removed when the process exits.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { run } from '../../src/host/exec.js';

export interface TestPostgres {
  /** postgres://postgres@127.0.0.1:PORT/corral */
  url: string;
  port: number;
  /** the server's data dir (inside the temp dir that stop() removes) */
  dataDir: string;
  /** a URL of another database on this server, made empty now (one per test that needs its own schema) */
  newDatabase(name?: string): Promise<string>;
  /** stop the server at once (pg_ctl -m immediate), keeping its data: clients see it go away */
  pause(): Promise<void>;
  /** start a paused server again, on the same port */
  resume(): Promise<void>;
  /** stop the server at once and remove its dir; twice is harmless */
  stop(): Promise<void>;
}

const LIMIT_MS = 120_000;

/** The newest PostgreSQL's bin dir of Debian's layout (/usr/lib/postgresql/N/bin), or CORRAL_PG_BIN. */
function binDir(): string {
  const given = process.env.CORRAL_PG_BIN;
  if (given) return given;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : [];
  const newest = versions.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) throw new Error(`no PostgreSQL server under ${root} (install the Debian package postgresql: scripts/host-deps.sh) or set CORRAL_PG_BIN`);
  return join(root, newest, 'bin');
}

/** A TCP port of 127.0.0.1 that was free a moment ago. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** The argv that runs a PostgreSQL program as `postgres` when we are root, else as ourselves. */
function asPostgres(bin: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

async function pgUid(): Promise<{ uid: number; gid: number }> {
  const f = (await run('getent', ['passwd', 'postgres'], { timeoutMs: 10_000 })).stdout.trim().split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

const running = new Set<{ bin: string; dir: string; dataDir: string; up: boolean }>();
let exitHookSet = false;

/** Stop every server still running and remove its dir, synchronously (at exit, nothing else can run). */
function stopAll(): void {
  for (const s of running) {
    try {
      if (s.up) execFileSync(...asPostgres(join(s.bin, 'pg_ctl'), ['-D', s.dataDir, '-m', 'immediate', 'stop']), { stdio: 'ignore', timeout: 30_000 });
    } catch { /* already gone */ }
    rmSync(s.dir, { recursive: true, force: true });
  }
  running.clear();
}

/**
 * Servers a test forgot are stopped at exit, and on SIGINT/SIGTERM (pg_ctl puts the server in a session of its
 * own, so a Ctrl-C of the tests does not reach it): the signal is raised again once they are stopped.
 */
function exitHook(): void {
  if (exitHookSet) return;
  exitHookSet = true;
  process.on('exit', stopAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      stopAll();
      process.kill(process.pid, sig);
    });
  }
}

/** Start a private server (see the top of this file). */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), 'corral-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const s = { bin, dir, dataDir, up: false };
  running.add(s);
  exitHook();
  if (process.getuid?.() === 0) {
    const { uid, gid } = await pgUid();
    chownSync(dir, uid, gid);
  }
  const pgRun = (prog: string, args: string[]): Promise<unknown> =>
    run(...asPostgres(join(bin, prog), args), { timeoutMs: LIMIT_MS });

  await pgRun('initdb', ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  let port = 0;
  const start = async (): Promise<void> => {
    await pgRun('pg_ctl', ['-D', dataDir, '-l', logFile, '-w', '-t', '60', '-o', `-p ${port}`, 'start']);
    s.up = true;
  };
  appendFileSync(join(dataDir, 'postgresql.conf'), [
    '', '# a private test server (test/unit/postgres.ts)',
    "listen_addresses = '127.0.0.1'",
    `unix_socket_directories = '${dir}'`,
    // fsync off: data survives the server's crash (pause()), not the machine's; commits stay synchronous so pause() loses none
    'fsync = off', 'full_page_writes = off',
    'max_connections = 100', 'shared_buffers = 16MB', '',
  ].join('\n'));
  // the port is picked before the server binds it: another process may take it in between, so try a few
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    try {
      await start();
      break;
    } catch (e) {
      if (attempt >= 3) throw e;
    }
  }
  const url = (db: string): string => `postgres://postgres@127.0.0.1:${port}/${db}`;
  let made = 0;
  const newDatabase = async (name = `corral_${++made}`): Promise<string> => {
    const c = new pg.Client({ connectionString: url('postgres') });
    await c.connect();
    try {
      await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } finally {
      await c.end();
    }
    return url(name);
  };
  await newDatabase('corral');
  const stopServer = async (): Promise<void> => {
    if (!s.up) return;
    await pgRun('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    s.up = false;
  };
  return {
    url: url('corral'), port, dataDir, newDatabase,
    pause: stopServer,
    resume: async () => {
      if (!s.up) await start();
    },
    stop: async () => {
      if (!running.has(s)) return;
      await stopServer();
      running.delete(s);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
