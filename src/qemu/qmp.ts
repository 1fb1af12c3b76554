/**
 * QMP client, structured like Incus's internal/server/instance/drivers/qmp: one connection per monitor
 * socket, replies matched to commands by `id`, one stream of asynchronous events, a time limit per
 * command, a disconnect turned into a typed error, and `quit`. The typed operations the services use are
 * src/qemu/vm-control.ts (the hypervisor seam).
 *
 * Wire protocol: one JSON object per line (QEMU ends lines with \r\n). No out-of-band execution.
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { QmpCommandError, QmpDisconnectedError, QmpError, QmpTimeoutError } from './qmp-errors.js';

export { QmpCommandError, QmpDisconnectedError, QmpError, QmpTimeoutError } from './qmp-errors.js';

/** An asynchronous event; `data` is {} when QEMU sent none (STOP, RESUME, ...). */
export interface QmpEvent { event: string; data: Record<string, unknown>; timestamp: { seconds: number; microseconds: number } }
export interface QmpVersion { qemu: { major: number; minor: number; micro: number }; package: string }
/** The greeting QEMU sends on connect: `{"QMP": {"version": ..., "capabilities": [...]}}`. */
export interface QmpGreeting { version: QmpVersion; capabilities: string[] }

/** Optional diagnostics sink (never required; e.g. `(l, m, d) => pinoLogger[l](d ?? {}, m)`). */
export type QmpLogger = (level: 'debug' | 'warn', message: string, details?: Record<string, unknown>) => void;

export interface QmpConnectOptions {
  /** Limit for connect + greeting + qmp_capabilities together (default 5000 ms). */
  timeoutMs?: number;
  /** Keep retrying ENOENT / ECONNREFUSED until the timeout: QEMU may not have created the socket yet. */
  retry?: boolean;
  /** Default per-command limit for execute() (default 10000 ms). */
  commandTimeoutMs?: number;
  /**
   * A connection that gets no greeting within this many ms is closed and dialled again (until the timeout). QEMU
   * (and qemu-storage-daemon, seen once in CI) can lose the greeting of a client that connected while its
   * monitor was being set up in the monitor I/O thread: that connection then waits for ever, a new one is greeted.
   */
  redialMs?: number;
  logger?: QmpLogger;
}
export interface QmpExecuteOptions {
  /** Per-command limit in ms; 0 or Infinity means wait for ever. */
  timeoutMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
export const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** A message longer than this (in characters) without a newline means a broken peer (libvirt caps at 10 MB). */
export const MAX_MESSAGE_LENGTH = 16 * 1024 * 1024;
/** Unix socket paths longer than this do not fit in sockaddr_un.sun_path. */
const MAX_SOCKET_PATH_BYTES = 107;

interface Pending { command: string; resolve: (value: unknown) => void; reject: (err: Error) => void; timer?: NodeJS.Timeout }

type QmpClientEvents = { event: [QmpEvent]; close: [QmpDisconnectedError] };

export class QmpClient extends EventEmitter<QmpClientEvents> {
  /** QEMU's greeting; set once connect() has resolved. */
  greeting: QmpGreeting | undefined;
  readonly path: string;

  private readonly socket: Socket;
  private readonly logger: QmpLogger | undefined;
  private readonly commandTimeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffer = '';
  private isClosed = false;
  private lastSocketError: Error | undefined;
  private greetingWait: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(socket: Socket, path: string, opts: QmpConnectOptions) {
    super();
    this.socket = socket;
    this.path = path;
    this.logger = opts.logger;
    this.commandTimeoutMs = opts.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS;
    socket.setEncoding('utf8'); // a multi-byte character split across chunks is reassembled
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => {
      this.lastSocketError = err;
      this.log('debug', `QMP socket error: ${err.message}`, { path });
    });
    socket.on('close', () => {
      const err = this.lastSocketError;
      this.finish(new QmpDisconnectedError(
        err ? `QMP connection to ${path} failed: ${err.message}` : `QMP connection to ${path} closed by QEMU`,
        err ? { cause: err } : undefined,
      ));
    });
  }

  /** Connect to a QMP unix socket, read the greeting and negotiate capabilities. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
      throw new QmpDisconnectedError(`QMP socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes: ${path}`);
    }
    let client: QmpClient;
    for (;;) {
      const socket = await dial(path, deadline, timeoutMs, opts.retry ?? false);
      client = new QmpClient(socket, path, opts);
      const redialAt = opts.redialMs === undefined ? deadline : Date.now() + opts.redialMs;
      if (redialAt >= deadline) break;
      try {
        await client.waitGreeting(redialAt, timeoutMs);
        break;
      } catch (e) {
        client.finish(new QmpDisconnectedError('QMP greeting did not come: dialling again', { cause: e }));
        if (!(e instanceof QmpTimeoutError)) throw e;
        client.log('warn', `no QMP greeting within ${opts.redialMs} ms: dialling again`, { path });
      }
    }
    try {
      await client.waitGreeting(deadline, timeoutMs);
      const left = deadline - Date.now();
      if (left <= 0) throw new QmpTimeoutError('qmp_capabilities', timeoutMs);
      await client.execute('qmp_capabilities', undefined, { timeoutMs: left });
    } catch (e) {
      client.finish(new QmpDisconnectedError('QMP handshake failed', { cause: e }));
      if (e instanceof QmpTimeoutError && e.timeoutMs !== timeoutMs) throw new QmpTimeoutError(e.command, timeoutMs, { cause: e });
      throw e;
    }
    return client;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Send a command; resolves with its `return` value or rejects with a QmpError subclass. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: QmpExecuteOptions = {}): Promise<T> {
    if (this.isClosed) {
      return Promise.reject(new QmpDisconnectedError(`QMP connection to ${this.path} is closed`, { command }));
    }
    const id = this.nextId++;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const entry: Pending = { command, resolve: resolve as (v: unknown) => void, reject };
      if (timeoutMs > 0 && Number.isFinite(timeoutMs)) {
        entry.timer = setTimeout(() => {
          this.pending.delete(id);
          this.log('warn', `QMP command ${command} (id ${id}) timed out after ${timeoutMs} ms`, { path: this.path });
          reject(new QmpTimeoutError(command, timeoutMs));
        }, timeoutMs);
      }
      this.pending.set(id, entry);
      this.socket.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Close the connection; pending commands reject and 'close' is emitted (once). */
  close(): void {
    this.finish(new QmpDisconnectedError(`QMP connection to ${this.path} closed by client`));
  }

  // ---- commands -------------------------------------------------------------------------------
  /** Ask QEMU to exit. QEMU may close the socket before or after its reply: both count as success. */
  async quit(): Promise<void> {
    try {
      await this.execute('quit');
    } catch (e) {
      if (!(e instanceof QmpDisconnectedError)) throw e;
    }
  }

  // ---- internals ------------------------------------------------------------------------------
  private waitGreeting(deadline: number, timeoutMs: number): Promise<void> {
    if (this.greeting) return Promise.resolve();
    if (this.isClosed) return Promise.reject(new QmpDisconnectedError(`QMP connection to ${this.path} closed before the greeting`));
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.greetingWait = undefined;
        reject(new QmpTimeoutError('greeting', timeoutMs));
      }, Math.max(0, deadline - Date.now()));
      this.greetingWait = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  private onData(chunk: string): void {
    try {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line !== '') this.onLine(line);
        if (this.isClosed) return;
      }
      if (this.buffer.length > MAX_MESSAGE_LENGTH) {
        this.buffer = '';
        this.finish(new QmpDisconnectedError(`QMP message from ${this.path} exceeds ${MAX_MESSAGE_LENGTH} characters`));
      }
    } catch (e) {
      // Never let an exception escape into the socket's 'data' emitter.
      this.log('warn', `QMP data handler failed: ${(e as Error).message}`, { path: this.path });
    }
  }

  private onLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.log('warn', 'QMP: skipping malformed line', { path: this.path, line: line.slice(0, 200) });
      return;
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
      this.log('warn', 'QMP: skipping a line that is not a JSON object', { path: this.path, line: line.slice(0, 200) });
      return;
    }
    const m = msg as Record<string, unknown>;
    if ('QMP' in m) return this.onGreeting(m.QMP);
    if (typeof m.event === 'string') return this.onEvent(m);
    if ('return' in m || 'error' in m) return this.onReply(m);
    this.log('warn', 'QMP: skipping a message of unknown shape', { path: this.path, line: line.slice(0, 200) });
  }

  private onGreeting(g: unknown): void {
    const v = asObject(asObject(g).version);
    const q = asObject(v.qemu);
    this.greeting = {
      version: { qemu: { major: Number(q.major ?? 0), minor: Number(q.minor ?? 0), micro: Number(q.micro ?? 0) }, package: String(v.package ?? '') },
      capabilities: Array.isArray(asObject(g).capabilities) ? (asObject(g).capabilities as unknown[]).map(String) : [],
    };
    const w = this.greetingWait;
    this.greetingWait = undefined;
    w?.resolve();
  }

  private onEvent(m: Record<string, unknown>): void {
    const ts = asObject(m.timestamp);
    const timestamp = { seconds: Number(ts.seconds ?? 0), microseconds: Number(ts.microseconds ?? 0) };
    this.safeEmit('event', { event: m.event as string, data: asObject(m.data), timestamp });
  }

  private onReply(m: Record<string, unknown>): void {
    const id = m.id;
    const entry = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!entry) {
      // QEMU sends id-less errors for unparsable input; a known-but-expired id is a reply that came too late.
      const what = `QMP: dropping reply with unknown id ${JSON.stringify(id)}`;
      this.log(id === undefined ? 'warn' : 'debug', what, { path: this.path, reply: JSON.stringify(m).slice(0, 200) });
      return;
    }
    this.pending.delete(id as number);
    if (entry.timer) clearTimeout(entry.timer);
    if ('error' in m) {
      const err = asObject(m.error);
      entry.reject(new QmpCommandError(entry.command, String(err.class ?? 'GenericError'), String(err.desc ?? '')));
    } else {
      entry.resolve(m.return);
    }
  }

  /** Tear down exactly once: reject everything that waits, destroy the socket, emit 'close'. */
  private finish(reason: QmpDisconnectedError): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(new QmpDisconnectedError(`${reason.message} (while waiting for ${p.command})`, { cause: reason.cause, command: p.command }));
    }
    const gw = this.greetingWait;
    this.greetingWait = undefined;
    gw?.reject(new QmpDisconnectedError(`${reason.message} (before the greeting)`, { cause: reason.cause }));
    this.socket.destroy();
    this.safeEmit('close', reason);
  }

  /** Emit without letting a throwing listener escape into the socket's emitter (or into close()). */
  private safeEmit(name: 'event', arg: QmpEvent): void;
  private safeEmit(name: 'close', arg: QmpDisconnectedError): void;
  private safeEmit(name: 'event' | 'close', arg: QmpEvent | QmpDisconnectedError): void {
    try {
      if (name === 'event') this.emit('event', arg as QmpEvent);
      else this.emit('close', arg as QmpDisconnectedError);
    } catch (e) {
      this.log('warn', `QMP '${name}' listener threw: ${(e as Error).message}`, { path: this.path });
    }
  }

  private log(level: 'debug' | 'warn', message: string, details?: Record<string, unknown>): void {
    try {
      this.logger?.(level, message, details);
    } catch {
      /* a broken logger must not break the client */
    }
  }
}

function asObject(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

/** Open the unix socket, retrying (if asked) while QEMU has not created or bound it yet. */
async function dial(path: string, deadline: number, timeoutMs: number, retry: boolean): Promise<Socket> {
  let delay = 20;
  let lastErr: Error | undefined;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new QmpTimeoutError('connect', timeoutMs, lastErr ? { cause: lastErr } : undefined);
    try {
      return await dialOnce(path, left, timeoutMs);
    } catch (e) {
      if (e instanceof QmpError) throw e;
      const err = e as NodeJS.ErrnoException;
      lastErr = err;
      if (!retry || !RETRYABLE.has(err.code ?? '')) {
        throw new QmpDisconnectedError(`cannot connect to QMP socket ${path}: ${err.message}`, { cause: err });
      }
    }
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(delay, deadline - Date.now()))));
    delay = Math.min(delay * 2, 200);
  }
}

function dialOnce(path: string, leftMs: number, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection({ path });
    const timer = setTimeout(() => {
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.destroy();
      reject(new QmpTimeoutError('connect', timeoutMs));
    }, leftMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.on('error', () => {}); // the client attaches its own handler; never leave the socket without one
      resolve(socket);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}
