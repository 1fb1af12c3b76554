/** A tiny fake corral API for CLI tests: canned answers, every request recorded. */
import { after, before } from 'node:test';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

export const CLI = fileURLToPath(new URL('../../../src/cli/main.js', import.meta.url));

export interface Recorded { method: string; url: string; headers: IncomingMessage['headers']; body: string }

export const INSTANCE = {
  name: 'web1', uuid: '7f8e2a4c-0000-4000-8000-000000000001', state: 'running', image: 'tiny', cpus: 2, memory: 536870912,
  firmware: 'bios', network: 'user', mac: '52:54:00:12:34:56', accel: 'tcg', pid: 4242,
  disk: { path: '/var/lib/corral/instances/x/root.qcow2', allocated: 1048576 }, uptime: 75, rss: 104857600,
  createdAt: '2025-01-01T00:00:00.000Z', startedAt: '2025-01-01T00:00:05.000Z', lastError: null,
  lastExit: {
    at: '2024-12-31T23:00:00.000Z', pid: 4100, state: 'crashed', reason: 'QEMU 4100 was killed by SIGSEGV: segfault at 18 error 4 in libc.so.6',
    code: null, signal: 'SIGSEGV', kernel: 'segfault at 18 error 4 in libc.so.6', service: null, stderr: null,
  },
  spec: {
    image: 'tiny', cpus: 2, memory: 536870912, disk: null, firmware: 'bios', accel: 'auto', topology: { sockets: 1, cores: 4, threads: 1 }, maxCpus: 4,
    cpuModel: 'auto', pin: [0, 1], cpuWeight: 200, cpuLimit: 1.5, maxMemory: 2147483648, memoryLimit: 3221225472, prealloc: false, hugepages: null,
    balloon: true, rootBus: 'virtio-blk', disks: [{ volume: 'data1', bus: 'sata' }], hostdevs: [],
    nics: [
      { id: 'net0', model: 'virtio-net', network: 'default', mac: '52:54:00:12:34:56', queues: 1, forwards: [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8022, guestPort: 22 }] },
      { id: 'net1', model: 'e1000', network: 'lan', mac: '52:54:00:12:34:57', queues: 1 },
    ],
  },
  updatedAt: '2025-01-01T00:00:05.000Z',
};

export const IMAGE = {
  name: 'tiny', kind: 'kernel', format: 'raw', disk: '/d/images/tiny/disk.raw', kernel: '/d/images/tiny/vmlinuz', initrd: '/d/images/tiny/initrd.img',
  cmdline: 'console=ttyS0', virtualSize: 268435456, createdAt: '2025-01-01T00:00:00.000Z', source: 'debian',
};

/** The bytes the fake serves as an archive. */
export const EXPORT_BYTES = Buffer.from('corral archive bytes\n'.repeat(200));

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

export function errorBody(code: string, message: string): unknown {
  return { error: { code, message } };
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

const routes: Record<string, Handler> = {
  'GET /v1/instances': (_q, res) => send(res, 200, { instances: [INSTANCE, { ...INSTANCE, name: 'db1', state: 'stopped', pid: null, uptime: null, rss: null, accel: null }] }),
  'POST /v1/instances': (_q, res, body) => send(res, 201, { ...INSTANCE, ...(JSON.parse(body) as object), memory: 536870912, state: 'stopped', pid: null }),
  'GET /v1/instances/web1': (_q, res) => send(res, 200, INSTANCE),
  'PATCH /v1/instances/web1': (_q, res, body) => send(res, 200, { instance: INSTANCE, changed: Object.keys(JSON.parse(body) as object), body: JSON.parse(body) as object }),
  'GET /v1/instances/web1/nics': (_q, res) => send(res, 200, { nics: [{ id: 'net0', ip: null }, { id: 'net1', ip: '10.50.0.12' }] }),
  'GET /v1/instances/web1/memory': (_q, res) => send(res, 200, { guest: { visible: 1073741824 } }),
  'POST /v1/instances/web1/start': (_q, res) => send(res, 409, errorBody('INVALID_STATE', 'cannot start "web1": it is running')),
  // a guest that powers off within any timeout but 0
  // a guest that powers off within any timeout but 0, and ignores ACPI (powered off by its guest agent) at timeout 7
  'POST /v1/instances/web1/stop': (_q, res, body) => {
    const timeout = (JSON.parse(body) as { timeout?: number }).timeout;
    send(res, 200, { ...INSTANCE, state: 'stopped', pid: null, killed: timeout === 0, stoppedBy: timeout === 0 ? 'kill' : timeout === 7 ? 'agent' : 'acpi' });
  },
  // a guest agent that runs `CMD...` as: stdout "ran CMD ARGS" + stdin + a byte that is not UTF-8, stderr "err", exit 3
  'POST /v1/instances/web1/exec': (_q, res, body) => {
    const b = JSON.parse(body) as { command: string[]; stdin?: string; encoding?: 'utf8' | 'base64' };
    const enc = b.encoding ?? 'utf8';
    const stdin = b.stdin === undefined ? Buffer.alloc(0) : Buffer.from(b.stdin, enc);
    const out = Buffer.concat([Buffer.from(`ran ${b.command.join(' ')}\n`), stdin, Buffer.from([0xff, 0x0a])]);
    send(res, 200, { exitCode: 3, signal: null, stdout: out.toString(enc), stderr: Buffer.from('err\n').toString(enc), encoding: enc, stdoutTruncated: false, stderrTruncated: false });
  },
  // an export prepared (progress, then its id and length), its download whole (x1) or cut short (x2)
  'POST /v1/instances/web1/export': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'compress', message: 'flattening and compressing the root disk', percent: 50 })}\n`);
    res.end(`${JSON.stringify({ type: 'result', export: { id: 'x1', instance: 'web1', size: EXPORT_BYTES.length, diskBytes: 4096, manifest: { consistency: 'backup', files: [] } } })}\n`);
  },
  'POST /v1/instances/db1/export': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(`${JSON.stringify({ type: 'result', export: { id: 'x2', instance: 'db1', size: EXPORT_BYTES.length, diskBytes: 4096, manifest: { consistency: 'stopped', files: [] } } })}\n`);
  },
  'GET /v1/exports/x1': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': EXPORT_BYTES.length });
    res.end(EXPORT_BYTES);
  },
  'GET /v1/exports/x2': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-tar', 'content-length': EXPORT_BYTES.length });
    res.write(EXPORT_BYTES.subarray(0, 100));
    res.destroy();
  },
  // a copy made (progress, then the new instance named in the body)
  'POST /v1/instances/web1/copy': (_q, res, body) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'copy', message: 'copying the root disk whole, with its snapshots' })}\n`);
    res.end(`${JSON.stringify({ type: 'result', instance: { ...INSTANCE, name: (JSON.parse(body) as { name: string }).name, state: 'stopped', pid: null } })}\n`);
  },
  'POST /v1/instances/import?name=web9': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(`${JSON.stringify({ type: 'result', instance: { ...INSTANCE, name: 'web9', state: 'stopped', pid: null } })}\n`);
  },
  'POST /v1/instances/db1/exec': (_q, res) => send(res, 409, { error: { code: 'AGENT_UNAVAILABLE', message: 'instance "db1" has no guest agent channel (it was created with --no-agent; corral set db1 agent=yes adds it from the next start)', reason: 'no-channel' } }),
  'GET /v1/instances/web2': (_q, res) => send(res, 200, {
    ...INSTANCE, name: 'web2', spec: { ...INSTANCE.spec, agent: true },
    guest: {
      os: { id: 'corral-tiny', name: 'Corral tiny', prettyName: 'Corral tiny 1', kernelRelease: '6.1.0-57-amd64', machine: 'x86_64' },
      interfaces: [
        { name: 'lo', mac: '00:00:00:00:00:00', addresses: [{ family: 'ipv4', address: '127.0.0.1', prefix: 8 }] },
        { name: 'eth0', mac: '52:54:00:12:34:56', addresses: [{ family: 'ipv6', address: 'fec0::5054:ff:fe12:3456', prefix: 64 }, { family: 'ipv4', address: '10.0.2.15', prefix: 24 }] },
      ],
    },
  }),
  'GET /v1/instances/db2': (_q, res) => send(res, 200, { ...INSTANCE, name: 'db2', spec: { ...INSTANCE.spec, agent: false } }),
  'POST /v1/instances/web1/kill': (_q, res) => send(res, 200, { ...INSTANCE, state: 'stopped', pid: null }),
  'DELETE /v1/instances/web1?force=true': (_q, res) => send(res, 200, { deleted: 'web1' }),
  'DELETE /v1/instances/web1': (_q, res) => send(res, 409, {
    error: { code: 'INVALID_STATE', message: 'cannot delete instance "web1": it is running (allowed from: stopped, crashed, error)', state: 'running', operation: 'delete' },
  }),
  'GET /v1/instances/web1/console/log': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    // a shell prompt asking where the cursor is (ESC[6n), in colour (ESC[1;32m ... ESC[0m)
    res.end(Buffer.concat([Buffer.from('Linux version 6.1\r\n\x1b[1;32m~ #\x1b[0m \x1b[6n'), Buffer.from([0x00, 0xff])]));
  },
  'GET /v1/images': (_q, res) => send(res, 200, { images: [IMAGE] }),
  // as a cluster controller answers it without a target: every host's, one host lost
  'GET /v1/volumes': (_q, res) => send(res, 200, {
    volumes: [
      { name: 'data1', format: 'qcow2', virtualSize: 67108864, allocated: 196608, backing: null, attachedTo: null, createdAt: '2025-01-01T00:00:00.000Z', host: 'a1' },
      { name: 'data2', format: 'raw', virtualSize: 67108864, allocated: 0, backing: null, attachedTo: 'web1', createdAt: '2025-01-01T00:00:00.000Z', host: 'a2' },
    ],
    unreachable: [{ host: 'a3', reason: 'it is unreachable' }],
  }),
  'POST /v1/images/build-tiny': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'download', message: 'linux-image-amd64', percent: 42 })}\n`);
    setTimeout(() => {
      res.write(`${JSON.stringify({ type: 'progress', step: 'initramfs', message: 'packing' })}\n{"type":"res`);
      setTimeout(() => res.end(`ult","image":${JSON.stringify(IMAGE)}}\n`), 20);
    }, 20);
  },
  'POST /v1/images': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'inspect', message: 'qemu-img info' })}\n`);
    res.end(`${JSON.stringify({ type: 'error', error: { code: 'INVALID_IMAGE', message: 'the image has a backing file' } })}\n`);
  },
  'POST /v1/images/disk2/upload?format=raw': (_q, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.write(`${JSON.stringify({ type: 'progress', step: 'receive', message: 'receiving disk2', percent: 100 })}\n`);
    res.end(`${JSON.stringify({ type: 'result', image: { ...IMAGE, name: 'disk2', kind: 'disk', format: 'raw' } })}\n`);
  },
  'GET /v1/host': (_q, res) => send(res, 200, {
    hostname: 'h1', accelerator: 'tcg', acceleratorReason: 'KVM probe timed out', acceleratorForced: false,
    qemu: { binary: '/usr/bin/qemu-system-x86_64', version: '8.2.2', machines: 40, devices: 300 },
    cpus: 16, cpuModel: 'Test CPU', memory: { total: 17179869184, available: 8589934592 }, futureField: { nested: [1, 2] },
  }),
  'GET /v1/events?since=5': (_q, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = { id: 6, time: '2025-01-01T00:00:00.000Z', type: 'instance.state', instance: 'web1', data: { from: 'starting', to: 'running' } };
    res.write(`id: 6\nevent: instance.state\ndata: ${JSON.stringify(ev)}\n\n: connected\n\n`);
    setTimeout(() => res.end(`id: 7\r\nevent: daemon.started\r\ndata: ${JSON.stringify({ ...ev, id: 7, type: 'daemon.started', instance: null, data: { pid: 1 } })}\r\n\r\n`), 20);
  },
  'GET /v1/instances/web': (_q, res) => send(res, 404, { error: { code: 'INSTANCE_NOT_FOUND', message: 'instance "web" not found', name: 'web' } }),
  'GET /v1/instances/zzz': (_q, res) => send(res, 404, { error: { code: 'INSTANCE_NOT_FOUND', message: 'instance "zzz" not found', name: 'zzz' } }),
  'GET /v1/events': (req, res) => {
    // an endless stream: one event every 10 ms until the client goes
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let id = 100;
    const timer = setInterval(() => {
      id++;
      const ev = { id, time: '2025-01-01T00:00:00.000Z', type: 'qemu.event', instance: 'web1', data: { event: 'RTC_CHANGE' } };
      res.write(`id: ${id}\nevent: qemu.event\ndata: ${JSON.stringify(ev)}\n\n`);
    }, 10);
    req.socket.on('close', () => clearInterval(timer));
  },
  'GET /v1/events?since=8': (_q, res) => {
    // the daemon stopping: its last event, then the end of the stream
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = { id: 9, time: '2025-01-01T00:00:00.000Z', type: 'daemon.stopping', instance: null, data: { pid: 1, signal: 'SIGTERM' } };
    res.end(`: connected\n\nid: 9\nevent: daemon.stopping\ndata: ${JSON.stringify(ev)}\n\n`);
  },
  'GET /v1/events?since=10': (_q, res) => {
    // a connection cut in the middle of the stream
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = { id: 11, time: '2025-01-01T00:00:00.000Z', type: 'instance.created', instance: 'web1', data: {} };
    res.write(`id: 11\nevent: instance.created\ndata: ${JSON.stringify(ev)}\n\n`);
    setTimeout(() => res.socket?.destroy(), 50);
  },
};

export interface FakeApi {
  dir: string;
  socket: string;
  requests: Recorded[];
  /** Bytes the console websocket received from the CLI. */
  consoleInput: Buffer[];
  close(): Promise<void>;
}

function handler(requests: Recorded[], token?: string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) {
        send(res, 401, errorBody('UNAUTHORIZED', 'a valid bearer token is required'));
        return;
      }
      const route = routes[`${req.method} ${req.url}`];
      if (route) route(req, res, body);
      else send(res, 404, errorBody('NOT_FOUND', `no route ${req.method} ${req.url}`));
    });
  };
}

function listen(server: Server, target: string | number): Promise<void> {
  return new Promise((resolve) => {
    if (typeof target === 'string') server.listen(target, resolve);
    else server.listen(target, '127.0.0.1', resolve);
  });
}

/** A fake API on DIR/corral.sock (or TCP with a token when asked). */
/**
 * A fake API for a test file: started before its tests, closed after them. `env` points the CLI at it; both are
 * there once the file's tests run.
 */
export function useFakeApi(): { readonly api: FakeApi; readonly env: Record<string, string> } {
  let api: FakeApi | undefined;
  before(async () => {
    api = await startFakeApi();
  });
  after(async () => {
    await api?.close();
  });
  return {
    get api(): FakeApi {
      if (!api) throw new Error('the fake API is not started yet');
      return api;
    },
    get env(): Record<string, string> {
      return { CORRAL_DATA_DIR: this.api.dir };
    },
  };
}

/** With tcpToken: HTTPS on 127.0.0.1 (the daemon serves TCP over TLS only) with this certificate and key. */
export async function startFakeApi(opts: { tcpToken?: string; tls?: { cert: string; key: string } } = {}): Promise<FakeApi & { port?: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'corral cli '));
  const socket = join(dir, 'corral.sock');
  const requests: Recorded[] = [];
  const consoleInput: Buffer[] = [];
  if (opts.tcpToken !== undefined && !opts.tls) throw new Error('a TCP fake API needs tls: the CLI talks TLS only');
  const server = opts.tls
    ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler(requests, opts.tcpToken)) as unknown as Server
    : createServer(handler(requests, opts.tcpToken));
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, sock, head) => {
    requests.push({ method: 'UPGRADE', url: req.url ?? '', headers: req.headers, body: '' });
    if (req.url === '/v1/instances/web1/console') {
      wss.handleUpgrade(req, sock, head, (ws) => {
        // a terminal query split across two frames: a pipe must not get it
        ws.send(Buffer.from('Welcome to tiny\r\n\x1b[6'));
        ws.send(Buffer.from('n'));
        ws.on('message', (d: Buffer) => {
          consoleInput.push(Buffer.from(d));
          // echo as a guest shell would, then power off on "poweroff"
          ws.send(Buffer.concat([Buffer.from('echo: '), Buffer.from(d)]));
          if (d.toString().includes('poweroff')) setTimeout(() => ws.close(1000, 'console closed'), 50);
        });
      });
      return;
    }
    const body = JSON.stringify(errorBody('INVALID_STATE', 'the console of "db1" is not available: it is stopped'));
    sock.end(`HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  });
  let port: number | undefined;
  if (opts.tcpToken !== undefined) {
    await listen(server, 0);
    const addr = server.address();
    port = typeof addr === 'object' && addr ? addr.port : undefined;
  } else {
    await listen(server, socket);
  }
  return {
    dir, socket, requests, consoleInput, port,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RunResult { code: number | null; stdout: string; stderr: string; stdoutBytes: Buffer }

/**
 * Run the compiled CLI with its stdout a pipe whose reader goes away: at once ('start', before the CLI writes
 * anything) or after the first bytes ('first-data'), as `| head -1` does.
 */
export function runCliClosingStdout(args: string[], env: Record<string, string | undefined>, when: 'start' | 'first-data'): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, CORRAL_URL: undefined, CORRAL_TOKEN: undefined, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    const child = spawn(process.execPath, [CLI, ...args], { env: childEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    if (when === 'start') child.stdout.destroy();
    else child.stdout.once('data', (c: Buffer) => { out.push(c); child.stdout.destroy(); });
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
    child.stdin.end();
  });
}

/** Run the compiled CLI as a child process. */
export function runCli(args: string[], env: Record<string, string | undefined>, input?: string | null, cwd?: string): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, CORRAL_URL: undefined, CORRAL_TOKEN: undefined, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    const child = spawn(process.execPath, [CLI, ...args], { env: childEnv, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
    if (input === null) return; // leave stdin open
    child.stdin.end(input ?? '');
  });
}
