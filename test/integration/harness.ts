/**
 * Integration test harness: a real daemon per test file, in its own data dir, driven through its API and
 * the real `corral` CLI, with the tiny image (built once by `make test-base`) linked in.
 */
import assert from 'node:assert/strict';
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before } from 'node:test';
import WebSocket from 'ws';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const CLI = join(REPO, 'dist/src/cli/main.js');
const BASE = process.env.CORRAL_TEST_BASE ?? join(REPO, '.data/test-base');

export function haveTinyBase(): boolean {
  return existsSync(join(BASE, 'images/tiny/image.json'));
}

/** Copy an image of the base data dir into another data dir (hard links; paths in image.json rewritten). */
export function installImage(dataDir: string, name = 'tiny'): void {
  const from = join(BASE, 'images', name);
  const to = join(dataDir, 'images', name);
  cpSync(from, to, { recursive: true });
  const meta = readFileSync(join(from, 'image.json'), 'utf8').split(from).join(to);
  writeFileSync(join(to, 'image.json'), meta);
}

/** node:test's skip option for files that need the tiny image. */
export const SKIP_NO_TINY: string | false = haveTinyBase() ? false : 'the tiny image is not built (run make test-base)';

/**
 * One daemon for a test file: started before its tests in a fresh data dir holding the tiny image (handed to
 * `set`), and destroyed with every QEMU it ran after them.
 */
export function useDaemon(set: (d: Daemon) => void, opts: { args?: string[]; env?: () => NodeJS.ProcessEnv; netns?: string } = {}): void {
  let daemon: Daemon | undefined;
  before(async () => {
    if (SKIP_NO_TINY) return;
    if (opts.netns) createNetns(opts.netns);
    daemon = new Daemon(newDataDir(), opts.args ?? [], opts.env?.() ?? {}, { netns: opts.netns });
    set(daemon);
    await daemon.start();
  });
  after(async () => {
    if (daemon) await daemon.destroy();
    if (opts.netns) deleteNetns(opts.netns);
  });
}

/** A fresh network namespace with lo up (for daemons and fake guests that must not touch the host's network). */
export function createNetns(name: string): void {
  deleteNetns(name);
  execFileSync('ip', ['netns', 'add', name]);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
}

/** Kill every process still in the namespace (a daemon's dnsmasq, say), then delete it; a missing one is fine. */
export function deleteNetns(name: string): void {
  let pids: string[] = [];
  try {
    pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(/\s+/).filter(Boolean);
  } catch {
    return; // no such namespace
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
}

/**
 * argv run inside a network namespace when one is given. nsenter enters only the network namespace, unlike
 * `ip netns exec`, which also mounts a fresh /sys without /sys/fs/cgroup (a daemon there could not make VM
 * cgroups). It execs the command, so the child's pid is the command's own.
 */
function inNetns(netns: string | undefined, bin: string, args: string[]): [string, string[]] {
  return netns ? ['nsenter', [`--net=/run/netns/${netns}`, '--', bin, ...args]] : [bin, args];
}

export function newDataDir(withTiny = true): string {
  const dir = mkdtempSync('/tmp/corral-it-');
  if (withTiny) installImage(dir);
  return dir;
}

export interface Reply<T = any> {
  status: number;
  body: T;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * Server-sent events as they arrive on `res`: each block (events are separated by a blank line) and, for a
 * `data:` block, its JSON. `onBlock` returns false to stop reading.
 */
export function onSse(res: IncomingMessage, onBlock: (block: string, event: unknown) => boolean): void {
  let buf = '';
  let reading = true;
  res.on('data', (c: Buffer) => {
    buf += c.toString();
    let i: number;
    while (reading && (i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = /^data: (.*)$/m.exec(block);
      reading = onBlock(block, data ? JSON.parse(data[1]!) : null);
    }
  });
}

/**
 * Signal a child that still runs and wait for its exit: its exit code (null when a signal ended it, or for no child).
 * A process killed by a signal keeps exitCode null: without the signalCode check a second kill (a destroy after a
 * test that failed while the process was down) would wait forever for an exit already seen.
 */
export async function signalAndWait(p: ChildProcess | null, signal: NodeJS.Signals): Promise<number | null> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return p?.exitCode ?? null;
  const exited = new Promise<number | null>((r) => p.once('exit', (code) => r(code)));
  p.kill(signal);
  return exited;
}

export class Daemon {
  proc: ChildProcess | null = null;
  log = '';
  readonly netns: string | undefined;
  /** the CLI command that runs it: `daemon`, or `agent` for a cluster host */
  readonly command: 'daemon' | 'agent';
  constructor(readonly dataDir: string, public extraArgs: string[] = [], readonly extraEnv: NodeJS.ProcessEnv = {}, opts: { netns?: string; command?: 'daemon' | 'agent' } = {}) {
    this.netns = opts.netns;
    this.command = opts.command ?? 'daemon';
  }

  get socket(): string {
    return join(this.dataDir, 'corral.sock');
  }

  env(): NodeJS.ProcessEnv {
    return { ...process.env, CORRAL_DATA_DIR: this.dataDir, CORRAL_LOG_LEVEL: 'warn', ...this.extraEnv };
  }

  async start(): Promise<void> {
    rmSync(this.socket, { force: true });
    const [bin, args] = inNetns(this.netns, process.execPath, [CLI, this.command, ...this.extraArgs]);
    const p = spawn(bin, args, { env: this.env(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    p.stdout!.on('data', (d: Buffer) => { this.log += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    await waitFor(async () => {
      if (p.exitCode !== null) throw new Error(`daemon exited ${p.exitCode}: ${this.log}`);
      return existsSync(this.socket) && (await this.api('GET', '/v1/instances').then(() => true, () => false));
    }, 20_000, 'daemon socket');
  }

  /** SIGKILL the daemon (QEMU processes must survive). */
  async kill9(): Promise<void> {
    await signalAndWait(this.proc, 'SIGKILL');
  }

  async stop(): Promise<void> {
    await signalAndWait(this.proc, 'SIGTERM');
  }

  /** An API call that must answer `status` (default 200); its body. */
  async ok(method: string, path: string, body?: unknown, status = 200): Promise<any> {
    const r = await this.api(method, path, body);
    assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.body)}`);
    return r.body;
  }

  api<T = any>(method: string, path: string, body?: unknown): Promise<Reply<T>> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        { socketPath: this.socket, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* not JSON */
            }
            resolve({ status: res.statusCode ?? 0, body: parsed as T, headers: res.headers });
          });
        },
      );
      req.on('error', reject);
      req.setTimeout(120_000, () => req.destroy(new Error(`${method} ${path} timed out`)));
      req.end(data);
    });
  }

  cli(args: string[], input?: string, timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      const [bin, argv] = inNetns(this.netns, process.execPath, [CLI, ...args]);
      const child = execFile(bin, argv, { env: this.env(), timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      });
      if (input !== undefined) child.stdin!.end(input);
      else child.stdin!.end();
    });
  }

  /**
   * Every event stored after `since`, as /v1/events replays them. The stream says `: connected` right after the
   * replay (routes-events.ts), so that comment, not a fixed read window, marks the end: an event missing from
   * the list was not stored when the request came.
   */
  events(since = 0, timeoutMs = 30_000): Promise<Array<{ id: number; type: string; instance: string | null; data: any }>> {
    return new Promise((resolve, reject) => {
      const out: Array<{ id: number; type: string; instance: string | null; data: any }> = [];
      const timer = setTimeout(() => { req.destroy(); reject(new Error(`/v1/events?since=${since}: no end of the replay within ${timeoutMs} ms`)); }, timeoutMs);
      const req = request({ socketPath: this.socket, path: `/v1/events?since=${since}` }, (res) => {
        onSse(res, (block, event) => {
          if (block === ': connected') {
            clearTimeout(timer);
            req.destroy();
            resolve(out);
            return false;
          }
          if (event) out.push(event as (typeof out)[number]);
          return true;
        });
      });
      req.on('error', (e) => { clearTimeout(timer); reject(e); });
      req.end();
    });
  }

  consoleLog(name: string): Promise<string> {
    return this.api<string>('GET', `/v1/instances/${name}/console/log`).then((r) => (typeof r.body === 'string' ? r.body : JSON.stringify(r.body)));
  }

  async waitConsole(name: string, re: RegExp, timeoutMs = 60_000): Promise<string> {
    let last = '';
    await waitFor(async () => {
      last = await this.consoleLog(name);
      return re.test(last);
    }, timeoutMs, `console of ${name} to match ${re}`, () => last.slice(-2000));
    return last;
  }

  /** Run a shell command in a running tiny guest over its serial console; what it printed. */
  async guest(name: string, cmd: string, timeoutMs = 30_000): Promise<string> {
    const c = await ConsoleSession.open(this, name);
    try {
      return await c.run(cmd, timeoutMs);
    } finally {
      await c.close();
    }
  }

  async waitState(name: string, state: string, timeoutMs = 30_000): Promise<any> {
    let cur: any;
    await waitFor(async () => {
      cur = (await this.api('GET', `/v1/instances/${name}`)).body;
      return cur?.state === state;
    }, timeoutMs, `${name} to be ${state}`, () => JSON.stringify(cur));
    return cur;
  }

  /** Kill every QEMU (and storage daemon) of this data dir and remove it (test clean-up). */
  async destroy(): Promise<void> {
    await this.kill9();
    const run = join(this.dataDir, 'run');
    if (existsSync(run)) {
      for (const uuid of readdirSync(run)) {
        // QEMU's pidfile, and those of the qemu-storage-daemons serving its vhost-user disks
        let pidfiles = ['qemu.pid'];
        try {
          pidfiles = [...pidfiles, ...readdirSync(join(run, uuid)).filter((f) => /^vu-.*\.pid$/.test(f))];
        } catch {
          /* not a folder */
        }
        for (const f of pidfiles) {
          try {
            const pid = Number(readFileSync(join(run, uuid, f), 'utf8'));
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

export async function waitFor(fn: () => Promise<boolean> | boolean, timeoutMs: number, what: string, detail?: () => string): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail ? `\n${detail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** An interactive serial console session over the API's websocket. */
export class ConsoleSession {
  buf = '';
  private prompted = false;
  private constructor(private ws: WebSocket) {
    ws.on('message', (d: Buffer) => { this.buf += d.toString('utf8'); });
  }

  static open(d: Daemon, name: string): Promise<ConsoleSession> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws+unix://${d.socket}:/v1/instances/${name}/console`);
      ws.once('open', () => resolve(new ConsoleSession(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => reject(new Error(`console refused: ${res.statusCode} ${body}`)));
      });
    });
  }

  send(text: string): void {
    this.ws.send(Buffer.from(text));
  }

  async expect(re: RegExp, timeoutMs = 20_000): Promise<string> {
    await waitFor(() => re.test(this.buf), timeoutMs, `console output matching ${re}`, () => this.buf.slice(-2000));
    return this.buf;
  }

  /**
   * Wait for the guest's shell prompt, pressing Enter until it shows: bytes sent to a serial port before the
   * shell has opened it are lost, so a test must not type into a console that has only just said "ready".
   */
  async prompt(timeoutMs = 30_000): Promise<void> {
    const from = this.buf.length;
    const t0 = Date.now();
    // eslint-disable-next-line no-control-regex
    const shown = (): string => this.buf.slice(from).replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '').trimEnd();
    while (!shown().endsWith('#')) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`no shell prompt after ${timeoutMs} ms: ${this.buf.slice(-500)}`);
      this.send('\n');
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  /** Type a command and wait for a marker printed after it, returning what the command printed. */
  async run(cmd: string, timeoutMs = 20_000): Promise<string> {
    if (!this.prompted) {
      await this.prompt(Math.max(30_000, timeoutMs)); // a busy guest is as slow to show its prompt as to answer
      this.prompted = true;
    }
    const tag = `__done_${Math.random().toString(36).slice(2, 8)}`;
    const from = this.buf.length;
    this.send(`${cmd}; echo ${tag.slice(0, 2)}''${tag.slice(2)}\n`);
    await waitFor(() => this.buf.slice(from).includes(`${tag}\r\n`) || this.buf.slice(from).includes(`${tag}\n`), timeoutMs, `command "${cmd}"`, () => this.buf.slice(from));
    const out = this.buf.slice(from);
    // Only what the command printed: the terminal first echoes the command line (wrapped, ending in the quoted
    // tag), and a test must never find its expected text in its own command.
    const quoted = `''${tag.slice(2)}`;
    const echoed = out.indexOf(quoted);
    const start = echoed < 0 ? 0 : out.indexOf('\n', echoed + quoted.length) + 1;
    return out.slice(start, out.lastIndexOf(tag));
  }

  /** Detach and wait until the daemon has seen the close. */
  close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return Promise.resolve();
    const closed = new Promise<void>((r) => this.ws.once('close', () => r()));
    this.ws.close();
    return closed;
  }
}
