/**
 * A controller's relay of an upload (an image's file, application/octet-stream) to the target host's agent: the
 * client's body goes on as it comes, never buffered (pipe: when the agent reads slower than the client sends, the
 * client is held back), and the agent's answer comes back as it comes (its refusal before a byte was read, TOO_LARGE,
 * or its job's progress lines). A client that goes away before its body ended cuts the agent's request, so that
 * the agent's own upload fails as a cut-short one does there (its staged file removed); once the agent has answered
 * whole, what the client still sends is read and dropped (dropRest, as a daemon does), never sent on.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { dropRest } from '../api/upload-body.js';

/** The headers of a relayed body: its type and, when known, its length (the agent's checks need it). */
export function relayHeaders(contentType: string, length: string | number | null | undefined): Record<string, string> {
  return { accept: 'application/json', 'content-type': contentType, ...(length !== undefined && length !== null ? { 'content-length': String(length) } : {}) };
}

/**
 * What becomes of the body once the agent has answered before it was all sent (a refusal): `drop` reads it and drops
 * it (dropRest: a client's upload, whose sender stops once it has the answer), `leave` leaves it to its owner
 * (a stream the caller reads from elsewhere, which it ends itself).
 */
export type RelayRest = 'drop' | 'leave';

/**
 * Send `prefix` (bytes already read from the body, if any) then `body` as the body of `req` (made, not yet written
 * to); the agent's response once its head has come. A failure before that (no connection, a reset) rejects with the
 * error `failed` makes of it. Once the agent has answered, nothing more is sent to it (`rest`: what becomes of the
 * body then).
 */
export function relayBody(req: ClientRequest, body: Readable, failed: (e: Error) => Error, o: { prefix?: Buffer; rest?: RelayRest } = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let answered = false;
    // the client went away (its request errors or closes before it ended): the agent's request is cut
    const cut = (): void => {
      if (!body.readableEnded && !req.destroyed) req.destroy(new Error('the client went away before its upload ended'));
    };
    body.on('error', cut);
    body.on('close', cut);
    // the agent answered whole before reading all of it (a refusal part-way), or its connection closed: the rest is
    // not sent on, but read and dropped, so that the client, still sending, is not held until a timeout (it stops
    // once it has the answer)
    const sendNoMore = (): void => {
      if (req.writableFinished || body.readableEnded) return;
      body.unpipe(req);
      body.off('close', cut);
      req.destroy();
      if (o.rest !== 'leave') dropRest(body);
    };
    req.on('close', sendNoMore);
    req.on('response', (res) => {
      answered = true;
      res.on('end', sendNoMore);
      resolve(res);
    });
    req.on('error', (e) => {
      if (!answered) reject(failed(e));
    });
    if (o.prefix && o.prefix.length > 0) req.write(o.prefix);
    body.pipe(req);
  });
}
