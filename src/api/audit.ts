/**
 * What the API writes to the audit log: every state-changing request (any method but GET, HEAD and OPTIONS), every
 * console websocket opened (it writes to the guest), and every request refused with 401 or 403. Who (the caller
 * the auth hook found), from where (TCP peer), what (method, path without the query, the resource it names), the
 * result (status, error code) and how long it took. Never a header, a body or a reply: no secret reaches the log.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuditEntry, AuditLog } from '../services/audit.js';

const READS = new Set(['GET', 'HEAD', 'OPTIONS']);
const MAX_PATH = 1024;
const MAX_NAME = 128;

/** The error code of each failed request, for its audit line (set where errors are answered). */
const failures = new WeakMap<FastifyRequest, string>();

/** Say why a request failed, for the audit log: the error handler does, and so does a stream that fails after its 200. */
export function noteFailure(req: FastifyRequest, code: string): void {
  failures.set(req, code);
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
    who: req.caller?.who ?? null,
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

/** Install the audit hooks on one API (`via`: the listener it serves). */
export function installAudit(app: FastifyInstance, audit: AuditLog, via: 'unix' | 'tcp'): void {
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
    audit.record(entry(req, via, 101, reply.elapsedTime));
  });
  app.addHook('onResponse', async (req, reply) => {
    const status = reply.statusCode;
    if (opened.has(req)) return;
    if (READS.has(req.method) && !req.ws && status !== 401 && status !== 403) return;
    audit.record(entry(req, via, status, reply.elapsedTime));
  });
}
