/**
 * An agent's long job relayed through a controller (copy, export, import, publish): the agent answers with JSON
 * lines (src/api/job-stream.ts: progress lines, then one result or one error), which go on to the caller as they
 * come, each whole line as it was (nothing but a line is held), with the controller's own bookkeeping on the way:
 * - `onResult` runs before the result line goes on, so that what the caller is told is in the cluster's records
 *   already (a copy or an import listed at once); it may return a new result object for the line (`host` added);
 * - `onFailure` runs when the job failed: an error line, an answer that is not a job (the agent refused the request
 *   itself: relayed as it is), or a stream that ended or broke without a result (the agent went away).
 */
import type { IncomingMessage } from 'node:http';
import { Transform, pipeline } from 'node:stream';
import type { FastifyReply } from 'fastify';
import { noteFailure } from '../api/audit.js';
import { parse, readAll } from './agent-client.js';
import { tail } from './cluster-events.js';

/** A partial line longer than this is passed on as it is, unread (no result line is that long). */
const MAX_LINE = 4 * 1024 * 1024;

export interface JobHooks {
  /** the result line's object (`{type:'result', <key>: ...}`); what it returns replaces it */
  onResult?: (line: Record<string, unknown>) => Promise<Record<string, unknown> | void>;
  onFailure?: (why: string) => Promise<void>;
}

/** Relay the agent's answer `res` to `reply` (see the file's comment); `host` names the agent in failures. */
export async function relayJob(reply: FastifyReply, res: IncomingMessage, host: string, hooks: JobHooks = {}): Promise<FastifyReply> {
  const status = res.statusCode ?? 502;
  const type = String(res.headers['content-type'] ?? 'application/json');
  if (status >= 300 || !type.startsWith('application/x-ndjson')) {
    const body = await readAll(res);
    if (status >= 300) await hooks.onFailure?.(`host ${host} refused it (${status}): ${tail(body.toString(), 300)}`);
    return reply.status(status).header('content-type', type).send(body);
  }
  let partial = '';
  let ended = false;
  const settle = async (why: string): Promise<void> => {
    if (ended) return;
    ended = true;
    await hooks.onFailure?.(why);
  };
  const onLine = async (text: string): Promise<string> => {
    const o = parse(Buffer.from(text)) as Record<string, unknown> | null;
    if (o === null || typeof o !== 'object' || ended) return text;
    if (o.type === 'result') {
      ended = true;
      const next = await hooks.onResult?.(o);
      return next ? JSON.stringify(next) : text;
    }
    if (o.type === 'error') {
      // the reply said 200 before the job failed: the audit says how it ended, as the agent's own does
      const code = (o.error as { code?: unknown } | undefined)?.code;
      noteFailure(reply.request, typeof code === 'string' ? code : 'INTERNAL');
      await settle(`host ${host} failed it: ${tail(JSON.stringify(o.error ?? null), 300)}`);
    }
    return text;
  };
  const lines = new Transform({
    transform(chunk: Buffer, _enc, done) {
      partial += chunk.toString('utf8');
      const cut = partial.lastIndexOf('\n');
      if (cut < 0) {
        if (partial.length <= MAX_LINE) return done();
        const out = partial;
        partial = '';
        return done(null, out);
      }
      const whole = partial.slice(0, cut).split('\n');
      partial = partial.slice(cut + 1);
      void (async () => {
        let out = '';
        for (const l of whole) out += `${l.trim() === '' ? l : await onLine(l)}\n`;
        return out;
      })().then((out) => done(null, out), (e: Error) => done(e));
    },
    flush(done) {
      const rest = partial;
      partial = '';
      void (rest.trim() === '' ? Promise.resolve(rest) : onLine(rest))
        .then(async (out) => {
          await settle(`the answer of host ${host} ended without a result`);
          done(null, out);
        }, (e: Error) => done(e));
    },
  });
  pipeline(res, lines, (e) => {
    if (e) void settle(`the answer of host ${host} broke off: ${e.message}`).catch(() => undefined);
  });
  return reply.status(status).header('content-type', type).send(lines);
}
