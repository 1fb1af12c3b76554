/**
 * A mock QMP server on a unix socket for tests: a QEMU-like greeting, capabilities negotiation, and
 * per-command scripted behaviour (a return value, an error, a stall, a reply and then a dropped
 * connection, replies written in small pieces or late, out of order), events and dropped connections.
 *
 *   const srv = await startMockQmp(sock, {
 *     'query-status': { return: { status: 'running', running: true } },
 *     'device_del': { error: { class: 'DeviceNotFound', desc: "Device 'x' not found" } },
 *     'slow': { stall: true },                       // never answered (unless the test answers the call)
 *     'quit': { return: {}, dropAfter: true },       // reply, then close the connection
 *     'chatty': (call) => { call.connection.sendEvent('STOP'); return { return: {} }; },
 *   });
 *   const call = await srv.waitForCall('slow'); await call.reply({ late: true });
 *   await srv.close();
 */
import { rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';

export interface MockQmpErrorBody { class: string; desc: string }
export interface MockWriteOptions {
  /** Write the message in pieces of this many bytes (1 = byte by byte), pausing pauseMs between them. */
  chunkSize?: number;
  /** Pause between pieces (default 2 ms, so that the reader sees separate chunks). */
  pauseMs?: number;
  /** Wait this long before writing. */
  delayMs?: number;
  /** Close the connection once the message is written. */
  dropAfter?: boolean;
}
/** What a command does: reply (return value or error), stall (no reply), or drop the connection. */
export type MockAction =
  | ({ return?: unknown; error?: MockQmpErrorBody } & MockWriteOptions)
  | { stall: true }
  | { drop: true };
export interface MockCall {
  readonly command: string;
  readonly args: Record<string, unknown> | undefined;
  readonly id: unknown;
  readonly connection: MockQmpConnection;
  /** Answer this call now (for stalled calls, or to answer out of order). */
  reply(value?: unknown, opts?: MockWriteOptions): Promise<void>;
  fail(qmpClass: string, desc: string, opts?: MockWriteOptions): Promise<void>;
}
/** A handler returns an action; returning nothing means `{ return: {} }`. */
export type MockHandler = (call: MockCall) => MockAction | void | Promise<MockAction | void>;
export interface MockQmpOptions {
  /** false: never send the greeting (to test the greeting timeout); an object replaces the "QMP" member. */
  greeting?: boolean | Record<string, unknown>;
  /** the first this many connections get no greeting (a greeting QEMU lost); later ones do */
  loseGreetings?: number;
}
export interface MockQmpConnection {
  readonly negotiated: boolean;
  readonly closed: boolean;
  sendEvent(event: string, data?: Record<string, unknown>, opts?: MockWriteOptions): Promise<void>;
  /** Write raw text as is (several messages in one write, malformed lines, ...). */
  writeRaw(text: string, opts?: MockWriteOptions): Promise<void>;
  drop(): void;
  /** Resolves once the client's end is closed on this side (the socket's 'close'); rejects after `timeoutMs`. */
  waitClosed(timeoutMs?: number): Promise<void>;
}
export interface MockQmpServer {
  readonly path: string;
  /** Connections still open. */
  readonly connections: readonly MockQmpConnection[];
  /** Every command received, in order (qmp_capabilities included). */
  readonly calls: readonly MockCall[];
  setHandler(command: string, handler: MockHandler | MockAction): void;
  /** The oldest call of `command` not yet returned by waitForCall, waiting for it if needed. */
  waitForCall(command: string, timeoutMs?: number): Promise<MockCall>;
  waitForConnection(timeoutMs?: number): Promise<MockQmpConnection>;
  /** Send an event to every negotiated connection. */
  sendEvent(event: string, data?: Record<string, unknown>): Promise<void>;
  dropAll(): void;
  close(): Promise<void>;
}

export const MOCK_QEMU_VERSION = { qemu: { major: 7, minor: 2, micro: 0 }, package: 'Debian 1:7.2+dfsg-7 (mock)' };

const DEFAULT_HANDLERS: Record<string, MockAction> = {
  'query-status': { return: { status: 'running', singlestep: false, running: true } },
  'query-version': { return: MOCK_QEMU_VERSION },
  'query-kvm': { return: { enabled: false, present: true } },
  'query-cpus-fast': {
    return: [{ 'cpu-index': 0, 'qom-path': '/machine/unattached/device[0]', 'thread-id': 4242, target: 'x86_64', props: { 'core-id': 0, 'thread-id': 0, 'socket-id': 0 } }],
  },
  stop: { return: {} },
  cont: { return: {} },
  system_powerdown: { return: {} },
  system_reset: { return: {} },
  quit: { return: {}, dropAfter: true },
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Conn implements MockQmpConnection {
  negotiated = false;
  closed = false;
  private queue: Promise<void> = Promise.resolve();
  private buffer = '';

  constructor(readonly socket: Socket, private readonly onLine: (c: Conn, line: string) => void) {
    socket.setEncoding('utf8');
    socket.on('error', () => {});
    socket.on('close', () => { this.closed = true; });
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf('\n')) >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) this.onLine(this, line);
      }
    });
  }

  /** Writes are queued so that a message written in slow pieces is never interleaved with another. */
  writeRaw(text: string, opts: MockWriteOptions = {}): Promise<void> {
    const run = async (): Promise<void> => {
      if (opts.delayMs) await sleep(opts.delayMs);
      const bytes = Buffer.from(text, 'utf8');
      const size = opts.chunkSize && opts.chunkSize > 0 ? opts.chunkSize : bytes.length;
      for (let off = 0; off < bytes.length && !this.closed; off += size) {
        if (off > 0) await sleep(opts.pauseMs ?? 2);
        if (!this.closed) this.socket.write(bytes.subarray(off, off + size));
      }
      if (opts.dropAfter) this.drop();
    };
    const p = this.queue.then(run);
    this.queue = p.catch(() => {});
    return p;
  }

  send(msg: unknown, opts?: MockWriteOptions): Promise<void> {
    return this.writeRaw(JSON.stringify(msg) + '\r\n', opts);
  }

  sendEvent(event: string, data?: Record<string, unknown>, opts?: MockWriteOptions): Promise<void> {
    const now = Date.now();
    const timestamp = { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 };
    return this.send(data === undefined ? { event, timestamp } : { event, data, timestamp }, opts);
  }

  drop(): void {
    this.closed = true;
    this.socket.destroy();
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`mock QMP: the connection did not close within ${timeoutMs} ms`)), timeoutMs);
      this.socket.once('close', () => { clearTimeout(timer); resolve(); });
    });
  }
}

export async function startMockQmp(
  path: string,
  handlers: Record<string, MockHandler | MockAction> = {},
  opts: MockQmpOptions = {},
): Promise<MockQmpServer> {
  const table = new Map<string, MockHandler | MockAction>(Object.entries({ ...DEFAULT_HANDLERS, ...handlers }));
  const conns = new Set<Conn>();
  const calls: MockCall[] = [];
  const claimed = new Set<MockCall>();
  const callWaiters: Array<{ command: string; resolve: (c: MockCall) => void }> = [];
  const connWaiters: Array<(c: MockQmpConnection) => void> = [];

  const dispatch = async (conn: Conn, line: string): Promise<void> => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      await conn.send({ error: { class: 'GenericError', desc: 'JSON parse error, invalid literal' } });
      return;
    }
    const command = String(msg.execute ?? '');
    const id = msg.id;
    const withId = (body: Record<string, unknown>): Record<string, unknown> => (id === undefined ? body : { ...body, id });
    const call: MockCall = {
      command,
      args: msg.arguments as Record<string, unknown> | undefined,
      id,
      connection: conn,
      reply: (value = {}, o) => conn.send(withId({ return: value }), o),
      fail: (qmpClass, desc, o) => conn.send(withId({ error: { class: qmpClass, desc } }), o),
    };
    calls.push(call);
    const wi = callWaiters.findIndex((w) => w.command === command);
    if (wi >= 0) {
      claimed.add(call);
      callWaiters.splice(wi, 1)[0]!.resolve(call);
    }
    if (command === 'qmp_capabilities') {
      if (conn.negotiated) return call.fail('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
      conn.negotiated = true;
      return call.reply({});
    }
    if (!conn.negotiated) return call.fail('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'");
    const h = table.get(command);
    if (h === undefined) return call.fail('CommandNotFound', `The command ${command} has not been found`);
    const action = (typeof h === 'function' ? await h(call) : h) ?? { return: {} };
    if ('stall' in action) return;
    if ('drop' in action) return conn.drop();
    const { return: ret, error, ...wopts } = action;
    if (error) return call.fail(error.class, error.desc, wopts);
    return call.reply(ret ?? {}, wopts);
  };

  const server: Server = createServer((socket) => {
    const conn = new Conn(socket, (c, line) => { dispatch(c, line).catch(() => {}); });
    conns.add(conn);
    socket.on('close', () => conns.delete(conn));
    let lose = opts.loseGreetings ?? 0;
    if (lose > 0) opts = { ...opts, loseGreetings: lose - 1 };
    else lose = 0;
    if (opts.greeting !== false && lose === 0) {
      const qmp = typeof opts.greeting === 'object' ? opts.greeting : { version: MOCK_QEMU_VERSION, capabilities: ['oob'] };
      void conn.send({ QMP: qmp });
    }
    connWaiters.splice(0).forEach((w) => w(conn));
  });
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => { server.off('error', reject); resolve(); });
  });

  /** Wait for `register`'s callback, unregistering the waiter if it does not come within `ms`. */
  const waitFor = <T>(register: (cb: (v: T) => void) => () => void, ms: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => { unregister(); reject(new Error(`mock QMP: no ${what} within ${ms} ms`)); }, ms);
      const unregister = register((v) => { clearTimeout(timer); resolve(v); });
    });
  const remove = <T>(list: T[], item: T) => (): void => { const i = list.indexOf(item); if (i >= 0) list.splice(i, 1); };

  return {
    path,
    get connections() { return [...conns].filter((c) => !c.closed); },
    calls,
    setHandler(command, handler) { table.set(command, handler); },
    waitForCall(command, timeoutMs = 5000) {
      const past = calls.find((c) => c.command === command && !claimed.has(c));
      if (past) { claimed.add(past); return Promise.resolve(past); }
      return waitFor<MockCall>((resolve) => { const w = { command, resolve }; callWaiters.push(w); return remove(callWaiters, w); }, timeoutMs, `call of ${command}`);
    },
    waitForConnection(timeoutMs = 5000) {
      const open = [...conns].find((c) => !c.closed);
      if (open) return Promise.resolve(open);
      return waitFor<MockQmpConnection>((resolve) => { connWaiters.push(resolve); return remove(connWaiters, resolve); }, timeoutMs, 'connection');
    },
    async sendEvent(event, data) {
      await Promise.all([...conns].filter((c) => c.negotiated && !c.closed).map((c) => c.sendEvent(event, data)));
    },
    dropAll() { for (const c of conns) c.drop(); },
    async close() {
      for (const c of conns) c.drop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}
