/**
 * What the API writes to the audit log: every state-changing request (any method but GET, HEAD and OPTIONS), every
 * console websocket opened (it writes to the guest), and every request refused with 401 or 403. Who (the caller
 * the auth hook found), from where (TCP peer), what (method, path without the query, the resource it names), the
 * result (status, error code) and how long it took. Never a header, a body or a reply: no secret reaches the log.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditEntry, AuditSink } from '../services/audit.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const MAX_PATH = 1024;
const MAX_NAME = 128;

/** The error code of each failed request, for its audit line (set where errors are answered). */
const failures = new WeakMap<FastifyRequest, string>();

/** Say why a request failed, for the audit log: the error handler does, and so does a stream that fails after its 200. */
export function noteFailure(req: FastifyRequest, code: string): void {
  failures.set(req, code);
}

/** Who made a request whose route checks its caller itself (a cluster agent's), for its audit line. */
const others = new WeakMap<FastifyRequest, string>();

/** Name the caller of a route that has no `req.caller` (a cluster agent, by its host). */
export function noteCaller(req: FastifyRequest, who: string): void {
  others.set(req, who);
}

function resourceOf(req: FastifyRequest): string | null {
  const params = req.params as Record<string, unknown> | undefined;
  const body = req.body as Record<string, unknown> | null | undefined;
  const name = params?.name ?? (body !== null && typeof body === 'object' && !Array.isArray(body) ? body.name : undefined);
  return typeof name === 'string' ? name.slice(0, MAX_NAME) : null;
}

/** The client's address, taken when the request comes in: a refused websocket upgrade's socket is gone by its reply. */
const peers = new WeakMap<FastifyRequest, string>();

function entry(req: FastifyRequest, via: 'unix' | 'tcp', status: number, ms: number): AuditEntry {
  return {
    time: new Date(Date.now() - ms).toISOString(),
    who: req.caller?.who ?? others.get(req) ?? null,
    role: req.caller?.role ?? null,
    via,
    peer: via === 'tcp' ? (peers.get(req) ?? null) : null,
    method: req.method,
    path: req.url.split('?')[0]!.slice(0, MAX_PATH),
    resource: resourceOf(req),
    status,
    code: failures.get(req) ?? null,
    ms: Math.round(ms * 10) / 10,
  };
}

/**
 * Install the audit hooks on one API (`via`: the listener it serves). `beforeReply`: each line is written (the
 * sink's promise awaited) before the reply is sent, so that a client that has its answer finds it in the log (a
 * cluster's, which any controller reads); otherwise once the reply is gone (the daemon's file: a synchronous write).
 */
export function installAudit(app: FastifyInstance, audit: AuditSink, via: 'unix' | 'tcp', opts: { beforeReply?: boolean } = {}): void {
  const opened = new WeakSet<FastifyRequest>();
  if (via === 'tcp') {
    app.addHook('onRequest', async (req) => {
      if (req.ip) peers.set(req, req.ip);
    });
  }
  // A websocket that opens is answered 101 by the upgrade, which Fastify does not see as a reply: it is written
  // here, once every check before its handler has passed.
  app.addHook('preHandler', async (req, reply) => {
    if (!req.ws) return;
    opened.add(req);
    await audit.record(entry(req, via, 101, reply.elapsedTime));
  });
  const written = new WeakSet<FastifyRequest>();
  const write = async (req: FastifyRequest, status: number, ms: number): Promise<void> => {
    if (opened.has(req) || written.has(req)) return;
    if (READS.has(req.method) && !req.ws && status !== 401 && status !== 403) return;
    written.add(req);
    await audit.record(entry(req, via, status, ms));
  };
  if (opts.beforeReply) {
    app.addHook('onSend', async (req, reply, payload) => {
      await write(req, reply.statusCode, reply.elapsedTime);
      return payload;
    });
  }
  // with beforeReply too: a reply that did not pass onSend (hijacked) is written once it is gone
  app.addHook('onResponse', async (req, reply) => write(req, reply.statusCode, reply.elapsedTime));
}
