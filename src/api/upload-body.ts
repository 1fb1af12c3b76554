/**
 * Uploads: a request whose body is a file (an instance archive, an image's disk) comes as it is: the request's own
 * stream, never buffered (no body limit applies), read by the job the route streams (streamJob). What the job did
 * not read is drained once it ends, so that its reply ends; its length (Content-Length) gives the progress.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { CorralError } from '../core/errors.js';
import type { Progress } from '../storage/images.js';
import { streamJob } from './job-stream.js';

/** Bodies of this content type reach their route as the request's stream. */
export function acceptStreamedBody(app: FastifyInstance, contentType: string): void {
  app.addContentTypeParser(contentType, (_req, payload, done) => done(null, payload));
}

/** The request's body as a stream (INVALID_SPEC, field body, when it came as something else or not at all). */
export function streamedBody(req: FastifyRequest, what: string): Readable {
  const body = req.body as Readable | undefined;
  if (!body || typeof body.pipe !== 'function') throw new CorralError('INVALID_SPEC', `body: ${what}`, { field: 'body' });
  return body;
}

/** The body's length from Content-Length, or null when the client did not say. */
export function declaredLength(req: FastifyRequest): number | null {
  const n = Number(req.headers['content-length']);
  return Number.isSafeInteger(n) && n > 0 ? n : null;
}

/**
 * What is left of an upload that will not be read: read and dropped, so that a client still sending it gets the
 * answer and stops (a body left unread holds it until a keep-alive timeout, 75 s here). Whoever read it before goes:
 * an async iterator leaves its 'readable' listener, with which resume() does nothing, and a 'data' listener would
 * still get what follows.
 */
export function dropRest(body: Readable): void {
  body.removeAllListeners('readable');
  body.removeAllListeners('data');
  body.resume();
}

/** streamJob for a job that reads `body`: whatever it did not read is dropped afterwards (dropRest). */
export function streamUploadJob<T>(reply: FastifyReply, body: Readable, job: (progress: Progress) => Promise<T>, key: string): FastifyReply {
  return streamJob(reply, async (p) => {
    try {
      return await job(p);
    } finally {
      dropRest(body);
    }
  }, key);
}
