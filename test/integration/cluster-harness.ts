/**
 * Cluster pieces for integration tests and benchmarks: a controller process (`corral controller`) on a port of
 * 127.0.0.1 (or of another local address, such as a test bridge's) with its own data dir, the CLI pointed at it (CORRAL_URL, CORRAL_TOKEN, CORRAL_TLS_CA), a simulated agent of many
 * hosts (`corral agent --simulate`), and free ports.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CLI, signalAndWait, waitFor } from './harness.js';
import { startPostgres, type TestPostgres } from '../unit/postgres.js';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface CliResult { code: number; stdout: string; stderr: string }

export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

/**
 * A new cluster for a test file: PostgreSQL on a private data dir and port, `corral cluster init` done on it, and a
 * directory for the hosts' shared pool (0711: the agents' unprivileged QEMUs reach their own files under it).
 */
export async function initCluster(): Promise<{ pg: TestPostgres; shared: string }> {
  const pg = await startPostgres();
  const shared = mkdtempSync('/tmp/corral-shared-');
  chmodSync(shared, 0o711);
  const init = await runCli(['cluster', 'init', '--database', pg.url, '--json'], {});
  assert.equal(init.code, 0, init.stderr);
  return { pg, shared };
}

/**
 * PostgreSQL on a private data dir and port with `corral cluster init` done on it, and two controllers over it,
 * started (for the tests of what several controllers share); all undone when any of it fails.
 */
export async function twoControllers(): Promise<{ server: TestPostgres; c1: Controller; c2: Controller }> {
  const server = await startPostgres();
  const made: Controller[] = [];
  try {
    const init = await runCli(['cluster', 'init', '--database', server.url, '--json'], {});
    assert.equal(init.code, 0, init.stderr);
    for (let i = 0; i < 2; i++) made.push(new Controller(server.url, await freePort()));
    await Promise.all(made.map((c) => c.start()));
    return { server, c1: made[0]!, c2: made[1]! };
  } catch (e) {
    for (const c of made) await c.destroy();
    await server.stop();
    throw e;
  }
}

export class Controller {
  proc: ChildProcess | null = null;
  log = '';
  readonly dataDir = mkdtempSync('/tmp/corral-ctl-');
  /** `host`: the local address it listens on (a bridge's, for agents in network namespaces of their own) */
  constructor(readonly database: string, readonly port: number, readonly env: NodeJS.ProcessEnv = {}, readonly host = '127.0.0.1') {}

  get url(): string {
    return `https://${this.host}:${this.port}`;
  }

  /** The environment that points the CLI at this controller. */
  cliEnv(): NodeJS.ProcessEnv {
    return {
      CORRAL_URL: this.url, CORRAL_TOKEN: readFileSync(join(this.dataDir, 'token'), 'utf8').trim(),
      CORRAL_TLS_CA: join(this.dataDir, 'cluster-ca.crt'), CORRAL_DATA_DIR: this.dataDir,
    };
  }

  /** The CLI against this controller with --json, which must succeed: its parsed output (null when it printed none). */
  async json(args: string[]): Promise<any> {
    const r = await this.cli([...args, '--json']);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim() ? JSON.parse(r.stdout) : null;
  }

  /** The CLI against this controller; `input` is its stdin (e.g. lines for `console`). */
  cli(args: string[], input?: string): Promise<CliResult> {
    return runCli(args, this.cliEnv(), 60_000, input);
  }

  /** Start it and wait until it answers; rejects with its output when it exits first. */
  async start(): Promise<void> {
    const p = spawn(process.execPath, [CLI, 'controller', '--database', this.database, '--listen', `${this.host}:${this.port}`], {
      env: { ...process.env, CORRAL_DATA_DIR: this.dataDir, CORRAL_LOG_LEVEL: 'info', ...this.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = p;
    this.log = '';
    p.stdout!.on('data', (d: Buffer) => { this.log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    await waitFor(() => {
      if (p.exitCode !== null) throw new Error(`controller exited ${p.exitCode}: ${this.log}`);
      return /corral controller listening/.test(this.log);
    }, 30_000, 'the controller to listen');
  }

  /** Run it to its end (for starts that must fail): exit code and output. */
  async runToExit(): Promise<{ code: number | null; log: string }> {
    const p = spawn(process.execPath, [CLI, 'controller', '--database', this.database, '--listen', `${this.host}:${this.port}`], {
      env: { ...process.env, CORRAL_DATA_DIR: this.dataDir, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    p.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    return { code, log };
  }

  async stop(): Promise<void> {
    await signalAndWait(this.proc, 'SIGTERM');
  }

  async destroy(): Promise<void> {
    await signalAndWait(this.proc, 'SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/**
 * A simulated agent (`corral agent --simulate N`) standing in for N hosts, joined through a controller with that
 * controller's token; its data dir is its own (under /dev/shm when there is one: its hosts' SQLite stores sync
 * every commit).
 */
export class SimAgent {
  proc: ChildProcess | null = null;
  log = '';
  readonly dataDir = mkdtempSync(existsSync('/dev/shm') ? '/dev/shm/corral-sim-' : '/tmp/corral-sim-');
  constructor(readonly controller: Controller, readonly hosts: number, readonly basePort: number, readonly args: string[] = [], readonly env: NodeJS.ProcessEnv = {}) {}

  /** Start it and wait for its line saying every host joined and is up; rejects with its output when it exits first. */
  async start(timeoutMs = 300_000): Promise<string> {
    const c = this.controller.cliEnv();
    const p = spawn(process.execPath, [
      CLI, 'agent', '--simulate', String(this.hosts), '--join', this.controller.url, '--controller-token', String(c.CORRAL_TOKEN),
      '--controller-ca', String(c.CORRAL_TLS_CA), '--base-port', String(this.basePort), ...this.args,
    ], { env: { ...process.env, CORRAL_DATA_DIR: this.dataDir, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    p.stdout!.on('data', (d: Buffer) => { this.log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    await waitFor(() => {
      if (p.exitCode !== null) throw new Error(`simulator exited ${p.exitCode}: ${this.log}`);
      return /joined and up/.test(this.log);
    }, timeoutMs, 'the simulated hosts to join');
    return /corral simulator: .*/.exec(this.log)![0];
  }

  stop(): Promise<number | null> {
    return signalAndWait(this.proc, 'SIGTERM');
  }

  async destroy(): Promise<void> {
    await signalAndWait(this.proc, 'SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Whether the TCP ports from..from+count-1 of 127.0.0.1 are all free now. */
export async function portsFree(from: number, count: number): Promise<boolean> {
  for (let p = from; p < from + count; p++) {
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!free) return false;
  }
  return true;
}

/** A run of `count` free consecutive ports of 127.0.0.1, at a random place from 20000 up. */
export async function freePortRange(count: number): Promise<number> {
  for (let tries = 0; tries < 50; tries++) {
    const from = 20000 + Math.floor(Math.random() * (40000 - count));
    if (await portsFree(from, count)) return from;
  }
  throw new Error(`no ${count} free consecutive ports found`);
}
