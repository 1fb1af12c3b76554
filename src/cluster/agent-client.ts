/**
 * A controller's calls to an agent's API: HTTPS to the address the host joined with, the controller's own
 * certificate as the client certificate (the agent takes it as an admin), and the agent's certificate checked
 * twice: issued by the cluster CA for that address, and the very certificate the host joined with (pinned by
 * fingerprint), so a removed or impostor host is never talked to.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import { request } from 'node:https';
import type { Readable } from 'node:stream';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import { CorralError } from '../core/errors.js';
import type { HostRow } from './cluster-store.js';
import { relayBody, relayHeaders, type RelayRest } from './upload-relay.js';

const READ_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 3000;
const KEEPALIVE_MS = 10_000;

export interface AgentReply {
  status: number;
  contentType: string;
  body: Buffer;
}

/** The controller's TLS pair and the cluster CA, PEM. */
export interface AgentTls { caPem: string; certPem: string; keyPem: string }

export class AgentClient {
  constructor(private readonly tls: AgentTls, private readonly timeoutMs = 60_000) {}

  /**
   * One request to a host's agent; HOST_UNAVAILABLE when it cannot be reached (or is not who it joined as). A read
   * waits READ_TIMEOUT_MS at most for an answer, anything else `timeoutMs` (a stop waits for the guest): a host whose
   * link was just cut is not `unreachable` until its lease runs out, and its calls must not hang until then.
   */
  async call(host: HostRow, method: string, path: string, body?: unknown, timeoutMs = method === 'GET' ? READ_TIMEOUT_MS : this.timeoutMs): Promise<AgentReply> {
    const res = await this.open(host, method, path, body, timeoutMs);
    const whole = await readAll(res).catch((e: Error) => { throw unavailable(host, e); });
    return { status: res.statusCode ?? 0, contentType: contentType(res), body: whole };
  }

  /**
   * One request whose answer is relayed as it comes (an image job's progress lines): the response once its head has
   * come, within the timeouts of `call`. From then on it may take as long as the agent's job does: no idle timeout,
   * but TCP keep-alive, so that an agent that goes away ends the stream (with an error) rather than leaving it open.
   */
  async stream(host: HostRow, method: string, path: string, body?: unknown, timeoutMs = method === 'GET' ? READ_TIMEOUT_MS : this.timeoutMs): Promise<IncomingMessage> {
    const res = await this.open(host, method, path, body, timeoutMs);
    res.socket.setTimeout(0);
    res.socket.setKeepAlive(true, KEEPALIVE_MS);
    return res;
  }

  /**
   * A request whose body is a stream of `length` bytes (application/octet-stream: an image's file relayed from one
   * agent to another), its JSON answer parsed, or the agent's own error. Sent as relay() sends it; a body the agent
   * refused part-way is left to its owner.
   */
  async upload<T>(host: HostRow, method: string, path: string, body: Readable, length: number): Promise<T> {
    const res = await this.relay(host, method, path, body, { contentType: 'application/octet-stream', length, rest: 'leave' });
    const parsed = parse(await readAll(res).catch((e: Error) => { throw unavailable(host, e); }));
    if ((res.statusCode ?? 0) >= 400) throw agentError(host, res.statusCode ?? 0, parsed);
    return parsed as T;
  }

  /**
   * A body relayed to a host's agent (upload-relay.ts): `prefix` (bytes already read from it, if any) then `body`, as
   * it comes (piped: with its backpressure), with its content type and length when known (chunked otherwise); the
   * agent's response once its head has come (a refusal, or its job's lines, relayed as they come). Once the agent
   * has answered, nothing more is sent to it (`rest`: what becomes of the body then; a client's upload is dropped).
   * No idle timeout while the body flows (a client may send slowly); TCP keep-alive ends it if the agent goes away;
   * a connection not made within CONNECT_TIMEOUT_MS is HOST_UNAVAILABLE.
   */
  relay(host: HostRow, method: string, path: string, body: Readable, head: { contentType: string; length: string | number | null | undefined; prefix?: Buffer; rest?: RelayRest }): Promise<IncomingMessage> {
    if (!host.address) return Promise.reject(noApi(host));
    const req = request(new URL(path, host.address), { method, ...agentTlsOptions(this.tls, host), headers: relayHeaders(head.contentType, head.length) });
    req.on('socket', (sock) => sock.setKeepAlive(true, KEEPALIVE_MS));
    connectTimeout(req);
    return relayBody(req, body, (e) => unavailable(host, e), { ...(head.prefix ? { prefix: head.prefix } : {}), ...(head.rest ? { rest: head.rest } : {}) }).then((res) => {
      res.socket.setTimeout(0);
      return res;
    });
  }

  /** The request, and its response once its head has come; HOST_UNAVAILABLE for anything before that. */
  private open(host: HostRow, method: string, path: string, body: unknown, timeoutMs: number): Promise<IncomingMessage> {
    if (!host.address) return Promise.reject(noApi(host));
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = request(new URL(path, host.address), {
        method, timeout: timeoutMs, ...agentTlsOptions(this.tls, host),
        headers: { accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}) },
      }, resolve);
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      connectTimeout(req);
      req.on('error', (e) => reject(unavailable(host, e)));
      req.end(payload);
    });
  }

  /** A JSON call that must succeed: the parsed body, or the agent's own error (its code and message). */
  async json<T>(host: HostRow, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    const r = await this.call(host, method, path, body, timeoutMs);
    const parsed = parse(r.body);
    if (r.status >= 400) throw agentError(host, r.status, parsed);
    return parsed as T;
  }
}

/** A new connection that is not made within CONNECT_TIMEOUT_MS: the host is not there, the request fails. */
function connectTimeout(req: ClientRequest): void {
  req.on('socket', (sock) => {
    if (!sock.connecting) return;
    const t = setTimeout(() => req.destroy(new Error(`no connection within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    sock.once('connect', () => clearTimeout(t));
    sock.once('close', () => clearTimeout(t));
  });
}

/** HOST_UNAVAILABLE for a host whose agent serves no API to be called. */
export function noApi(host: HostRow): CorralError {
  return new CorralError('HOST_UNAVAILABLE', `host "${host.name}" serves no API (its agent was started without --listen)`, { host: host.name });
}

/**
 * The TLS options of a connection to a host's agent (an HTTPS request, a websocket): the controller's own pair as
 * the client certificate, the cluster CA, and the agent's certificate checked for its address and pinned to the
 * one the host joined with.
 */
export function agentTlsOptions(tls: AgentTls, host: HostRow): { ca: string; cert: string; key: string; checkServerIdentity: (name: string, cert: PeerCertificate) => Error | undefined } {
  const pin = host.certFingerprint.toLowerCase();
  return {
    ca: tls.caPem, cert: tls.certPem, key: tls.keyPem,
    checkServerIdentity: (name, cert) => {
      const err = checkServerIdentity(name, cert);
      if (err) return err;
      const got = cert.fingerprint256.replace(/:/g, '').toLowerCase();
      return got === pin ? undefined : new Error(`the agent at ${host.address} shows another certificate than host "${host.name}" joined with`);
    },
  };
}

/** Read an answer (or any stream) whole: a refusal, small JSON. */
export function readAll(res: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
  });
}

export function parse(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    return buf.toString('utf8');
  }
}

/** The agent's error reply as a CorralError with its code, naming the host. */
export function agentError(host: HostRow, status: number, body: unknown): CorralError {
  const e = (body as { error?: Record<string, unknown> } | null)?.error;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    const { code, message, ...rest } = e;
    return new CorralError(code as never, message as string, { ...rest, host: host.name });
  }
  return new CorralError('HOST_UNAVAILABLE', `host "${host.name}" answered HTTP ${status}`, { host: host.name });
}

function contentType(res: IncomingMessage): string {
  return String(res.headers['content-type'] ?? 'application/json');
}

function unavailable(host: HostRow, e: Error): CorralError {
  return new CorralError('HOST_UNAVAILABLE', `host "${host.name}" (${host.address}) cannot be reached: ${e.message}`, { host: host.name });
}
