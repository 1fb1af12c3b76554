/**
 * A long job's reply (image import and upload, build-tiny, copies, archives): a stream of JSON lines
 * (application/x-ndjson), its progress lines, then {"type":"result",...} or {"type":"error","error":{...}}.
 */
import type { FastifyReply } from 'fastify';
import { PassThrough } from 'node:stream';
import { CorralError, isCorralError } from '../core/errors.js';
import type { Progress } from '../storage/images.js';
import { noteFailure } from './audit.js';

/** A job's reply as JSON lines: its progress, then `{"type":"result","<key>":...}` or its error. */
export function streamJob<T>(reply: FastifyReply, job: (progress: Progress) => Promise<T>, key = 'image'): FastifyReply {
  const out = new PassThrough();
  const line = (o: unknown): void => {
    out.write(`${JSON.stringify(o)}\n`);
  };
  void reply.type('application/x-ndjson').send(out);
  job((ev) => line({ type: 'progress', ...ev }))
    .then((result) => line({ type: 'result', [key]: result }))
    .catch((e: unknown) => {
      const err = isCorralError(e) ? e : new CorralError('INTERNAL', (e as Error).message);
      noteFailure(reply.request, err.code); // the reply said 200 before the job failed: the audit log says how it ended
      line({ type: 'error', ...err.toJSON() });
    })
    .finally(() => out.end());
  return reply;
}
