/**
 * Cluster pieces for integration tests: a controller process (`corral controller`) on a loopback port with its own
 * data dir, the CLI pointed at it (CORRAL_URL, CORRAL_TOKEN, CORRAL_TLS_CA), and a free port.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CLI, waitFor } from './harness.js';

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

export function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export class Controller {
  proc: ChildProcess | null = null;
  log = '';
  readonly dataDir = mkdtempSync('/tmp/corral-ctl-');
  constructor(readonly database: string, readonly port: number, readonly env: NodeJS.ProcessEnv = {}) {}

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** The environment that points the CLI at this controller. */
  cliEnv(): NodeJS.ProcessEnv {
    return {
      CORRAL_URL: this.url, CORRAL_TOKEN: readFileSync(join(this.dataDir, 'token'), 'utf8').trim(),
      CORRAL_TLS_CA: join(this.dataDir, 'cluster-ca.crt'), CORRAL_DATA_DIR: this.dataDir,
    };
  }

  cli(args: string[]): Promise<CliResult> {
    return runCli(args, this.cliEnv());
  }

  /** Start it and wait until it answers; rejects with its output when it exits first. */
  async start(): Promise<void> {
    const p = spawn(process.execPath, [CLI, 'controller', '--database', this.database, '--listen', `127.0.0.1:${this.port}`], {
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
    const p = spawn(process.execPath, [CLI, 'controller', '--database', this.database, '--listen', `127.0.0.1:${this.port}`], {
      env: { ...process.env, CORRAL_DATA_DIR: this.dataDir, ...this.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    p.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
    const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    return { code, log };
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await exited;
  }

  async destroy(): Promise<void> {
    const p = this.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
