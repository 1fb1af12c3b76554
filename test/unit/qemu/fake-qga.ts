/**
 * A fake qemu-guest-agent on a unix socket, as QEMU's chardev serves a guest's agent to the daemon: it reads JSON
 * commands (dropping a half-read one at each 0xFF byte, as qemu-ga does), answers guest-sync-delimited with 0xFF and
 * {"return": id}, and every other command with its handler's value (or error). Behaviours a test can turn on: silence,
 * stale answers left in the channel before each sync answer, answers written a byte at a time and without newlines.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QgaFramer } from '../../../src/qemu/qga.js';

export type Handler = (args: Record<string, unknown>) => unknown;
/** A handler's refusal: the agent answers {"error": {class, desc}}. */
export class AgentError extends Error {
  constructor(readonly cls: string, desc: string) { super(desc); }
}
/** A handler's "no answer" (guest-shutdown answers nothing when it works). */
export const NO_REPLY = Symbol('no reply');

export class FakeAgent {
  readonly dir = mkdtempSync(join(tmpdir(), 'corral-qga-'));
  readonly socket = join(this.dir, 'qga.sock');
  /** every command received, in order (syncs as "sync") */
  readonly received: string[] = [];
  connections = 0;
  /** answer nothing at all */
  mute = false;
  /** before each sync's answer, leave a stale answer and a stale sync answer in the channel */
  stale = false;
  /** write answers one byte at a time, without newlines */
  trickle = false;
  /** delay each command's answer by this many ms */
  delayMs = 0;
  private server: Server;
  private clients = new Set<Socket>();

  constructor(readonly handlers: Record<string, Handler> = {}) {
    this.server = createServer((s) => this.serve(s));
  }

  start(): Promise<void> {
    return new Promise((r) => this.server.listen(this.socket, r));
  }

  /** Drop every connection (QEMU going away under the daemon). */
  dropClients(): void {
    for (const c of this.clients) c.destroy();
  }

  async close(): Promise<void> {
    this.dropClients();
    await new Promise<void>((r) => this.server.close(() => r()));
    rmSync(this.dir, { recursive: true, force: true });
  }

  private serve(s: Socket): void {
    this.connections++;
    this.clients.add(s);
    s.on('close', () => this.clients.delete(s));
    s.on('error', () => undefined);
    const framer = new QgaFramer();
    let chain = Promise.resolve();
    s.on('data', (d: Buffer) => {
      framer.push(d);
      for (let f = framer.next(); f; f = framer.next()) {
        if (f.kind !== 'message') continue;
        const m = f.value as { execute: string; arguments?: Record<string, unknown> };
        chain = chain.then(() => this.answer(s, m));
      }
    });
  }

  private async answer(s: Socket, m: { execute: string; arguments?: Record<string, unknown> }): Promise<void> {
    this.received.push(m.execute === 'guest-sync-delimited' ? 'sync' : m.execute);
    if (this.mute) return;
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (m.execute === 'guest-sync-delimited') {
      if (this.stale) await this.write(s, Buffer.from('{"return": {"stale": "answer {with} \\"braces\\""}}\n\xff{"return": 7}\n', 'latin1'));
      await this.write(s, Buffer.concat([Buffer.from([0xff]), this.json({ return: m.arguments?.id })]));
      return;
    }
    const h = this.handlers[m.execute];
    let reply: unknown;
    try {
      if (!h) throw new AgentError('CommandNotFound', `The command ${m.execute} has not been found`);
      const v = await h(m.arguments ?? {});
      if (v === NO_REPLY) return;
      reply = { return: v ?? {} };
    } catch (e) {
      reply = { error: { class: e instanceof AgentError ? e.cls : 'GenericError', desc: (e as Error).message } };
    }
    await this.write(s, this.json(reply));
  }

  private json(v: unknown): Buffer {
    return Buffer.from(`${JSON.stringify(v)}${this.trickle ? '' : '\n'}`);
  }

  private async write(s: Socket, b: Buffer): Promise<void> {
    if (!this.trickle) {
      s.write(b);
      return;
    }
    for (const byte of b) {
      s.write(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
  }
}
