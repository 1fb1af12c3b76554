/**
 * A client of the QEMU guest agent (qemu-guest-agent, "QGA") over the unix socket QEMU serves for the instance's
 * virtio-serial port org.qemu.guest_agent.0 (src/qemu/argv.ts, agentArgv).
 *
 * The protocol is QMP's JSON without a greeting or capabilities, and with no ids: the agent answers each command
 * in order, and an answer may be left in the channel by a caller that gave up (a timeout) or by an agent that
 * restarted. So every call first resynchronises, as libvirt does: it sends the 0xFF sentinel byte (the agent drops
 * any partial input when it reads it) and `guest-sync-delimited` with a random id; the agent answers 0xFF and
 * {"return": id}, and everything before that is stale and skipped. Then the command goes, and the next message is
 * its answer. Callers take turns (one at a time per channel), each call has a deadline (time spent waiting for its
 * turn counts), and a call that times out drops the connection, so that nothing half-read is left for the next.
 *
 * Errors are coded: AGENT_UNAVAILABLE when the channel is not there (QEMU gone), closes, or the agent does not
 * answer in time; AGENT_FAILED when the agent answers with an error (its class and description).
 */
import { randomInt } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { CorralError } from '../core/errors.js';

/** The byte the agent and the host send to mark a resynchronisation point (never part of UTF-8 JSON). */
export const QGA_SENTINEL = 0xff;
/** The most one message may hold: guest-exec-status carries up to 16 MiB of each stream, in base64. */
export const QGA_MAX_MESSAGE = 64 * 1024 * 1024;

/** What comes out of the channel: a sentinel byte, a complete JSON message, or bytes that are not JSON. */
export type QgaFrame = { kind: 'sentinel' } | { kind: 'message'; value: unknown } | { kind: 'garbage'; text: string };

/**
 * Cuts the agent's byte stream into frames: 0xFF bytes, and top-level JSON objects found by counting braces
 * outside strings (the agent may or may not end a message with a newline; bytes between objects are skipped).
 * A sentinel drops an object half-read. Incremental: each byte is looked at once.
 */
export class QgaFramer {
  private parts: Buffer[] = [];
  private size = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private readonly out: QgaFrame[] = [];

  push(chunk: Buffer): void {
    let start = this.depth > 0 ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (b === QGA_SENTINEL) {
        this.drop();
        start = -1;
        this.out.push({ kind: 'sentinel' });
        continue;
      }
      if (this.depth === 0) {
        if (b === 0x7b) {
          this.depth = 1;
          start = i;
        }
        continue;
      }
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (b === 0x5c) this.escaped = true;
        else if (b === 0x22) this.inString = false;
        continue;
      }
      if (b === 0x22) this.inString = true;
      else if (b === 0x7b || b === 0x5b) this.depth++;
      else if (b === 0x7d || b === 0x5d) {
        this.depth--;
        if (this.depth === 0) {
          this.parts.push(chunk.subarray(start, i + 1));
          const text = Buffer.concat(this.parts).toString('utf8');
          this.drop();
          start = -1;
          try {
            this.out.push({ kind: 'message', value: JSON.parse(text) as unknown });
          } catch {
            this.out.push({ kind: 'garbage', text: text.slice(0, 200) });
          }
        }
      }
    }
    if (this.depth > 0 && start >= 0) {
      const rest = chunk.subarray(start);
      this.parts.push(rest);
      this.size += rest.length;
      if (this.size > QGA_MAX_MESSAGE) {
        this.drop();
        this.out.push({ kind: 'garbage', text: `a message of more than ${QGA_MAX_MESSAGE} bytes` });
      }
    }
  }

  /** The next frame, if one is complete. */
  next(): QgaFrame | undefined {
    return this.out.shift();
  }

  private drop(): void {
    this.parts = [];
    this.size = 0;
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }
}

function unavailable(why: string, details: Record<string, unknown> = {}): CorralError {
  return new CorralError('AGENT_UNAVAILABLE', why, { reason: 'not-answering', ...details });
}

/** One guest agent's channel. Each instance has its own; calls on it take turns. */
export class QgaClient {
  private sock: Socket | null = null;
  private framer = new QgaFramer();
  private wake: (() => void) | null = null;
  private closedWhy: string | null = null;
  private turn: Promise<unknown> = Promise.resolve();

  /** `what`: how messages name the guest ("instance web1"). */
  constructor(readonly socketPath: string, private readonly what = 'the guest') {}

  /**
   * Run an agent command and return its `return` value. `timeoutMs` counts from now, waiting for the turn included.
   * `reply: false` for commands that answer nothing when they succeed (guest-shutdown): the call returns once the
   * command is sent to an agent that answered the sync.
   */
  call<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 5000, opts: { reply?: boolean } = {}): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    const run = this.turn.then(() => this.exchange<T>(command, args, deadline, timeoutMs, opts.reply !== false));
    this.turn = run.catch(() => undefined);
    return run;
  }

  /** Drop the connection (the instance stopped, or the client is no longer needed). */
  close(): void {
    this.sock?.destroy();
    this.sock = null;
    this.wake?.();
  }

  private async exchange<T>(command: string, args: Record<string, unknown> | undefined, deadline: number, timeoutMs: number, reply: boolean): Promise<T> {
    const late = (stage: string): CorralError => unavailable(
      `the guest agent of ${this.what} did not answer ${command} within ${(timeoutMs / 1000).toFixed(1)}s (${stage}): is qemu-guest-agent installed and running in the guest?`,
      { command },
    );
    try {
      if (Date.now() >= deadline) throw late('another call to the agent was still running');
      await this.connect(deadline);
      const id = randomInt(1, 2 ** 31);
      this.write(Buffer.concat([Buffer.from([QGA_SENTINEL]), Buffer.from(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } })}\n`)]));
      let synced = false;
      let afterSentinel = false;
      while (!synced) {
        const f = await this.frame(deadline, () => late('no answer to guest-sync-delimited'));
        if (f.kind === 'sentinel') afterSentinel = true;
        else if (f.kind === 'message' && afterSentinel && (f.value as { return?: unknown }).return === id) synced = true;
        else afterSentinel = false; // a stale answer (of a call that gave up), or a stale sync's
      }
      this.write(Buffer.from(`${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`));
      if (!reply) return undefined as T;
      for (;;) {
        const f = await this.frame(deadline, () => late('no answer to the command'));
        if (f.kind !== 'message') continue;
        const m = f.value as { return?: unknown; error?: { class?: string; desc?: string } };
        if (m.error !== undefined) {
          throw new CorralError('AGENT_FAILED', `the guest agent of ${this.what} refused ${command}: ${m.error.desc ?? 'no description'} (${m.error.class ?? 'GenericError'})`, { command, class: m.error.class ?? null });
        }
        if ('return' in m) return m.return as T;
      }
    } catch (e) {
      // a call that gave up leaves nothing behind: the next one connects afresh (and resynchronises anyway)
      if (!(e instanceof CorralError && e.code === 'AGENT_FAILED')) this.close();
      throw e;
    }
  }

  private connect(deadline: number): Promise<void> {
    if (this.sock) return Promise.resolve();
    this.framer = new QgaFramer();
    this.closedWhy = null;
    return new Promise((resolve, reject) => {
      const s = connect(this.socketPath);
      let done = false;
      const finish = (err?: CorralError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) {
          s.destroy();
          reject(err);
        } else resolve();
      };
      const timer = setTimeout(() => finish(unavailable(`the guest agent channel of ${this.what} (${this.socketPath}) did not accept a connection in time`)), Math.max(0, deadline - Date.now()));
      s.once('connect', () => {
        this.sock = s;
        finish();
      });
      s.on('data', (d: Buffer) => {
        if (this.sock !== s) return;
        this.framer.push(d);
        this.wake?.();
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        if (!done) {
          const gone = e.code === 'ENOENT' || e.code === 'ECONNREFUSED';
          finish(unavailable(
            gone ? `the guest agent channel of ${this.what} is not open (${e.code}): its QEMU is not running` : `the guest agent channel of ${this.what} failed: ${e.message}`,
            gone ? { reason: 'not-running' } : {},
          ));
        } else if (this.sock === s) this.closedWhy = e.message;
      });
      s.on('close', () => {
        if (this.sock !== s) return;
        this.closedWhy ??= 'closed by QEMU';
        this.sock = null;
        this.wake?.();
      });
    });
  }

  private write(b: Buffer): void {
    if (!this.sock) throw unavailable(`the guest agent channel of ${this.what} closed`);
    this.sock.write(b);
  }

  /** The next frame from the agent, waiting until the deadline; the channel closing fails the call. */
  private async frame(deadline: number, late: () => CorralError): Promise<QgaFrame> {
    for (;;) {
      const f = this.framer.next();
      if (f) return f;
      if (!this.sock) throw unavailable(`the guest agent channel of ${this.what} closed (${this.closedWhy ?? 'closed'}): its QEMU went away?`, { reason: 'not-running' });
      const left = deadline - Date.now();
      if (left <= 0) throw late();
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = null;
          resolve();
        };
      });
    }
  }
}
