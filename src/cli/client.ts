/**
 * The CLI's API client. By default HTTP over the daemon's unix socket ($CORRAL_DATA_DIR/corral.sock);
 * with CORRAL_URL set, HTTPS over TCP with `Authorization: Bearer <token>` (CORRAL_TOKEN or the token file), the
 * daemon's certificate pinned (CORRAL_TLS_FINGERPRINT) or verified (CORRAL_TLS_CA, else the system's CAs). A target
 * host (`--target`, else CORRAL_TARGET) goes with every request, websockets too, as the x-corral-target header: a
 * cluster controller sends what is that host's own to it; a single daemon refuses it.
 */
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { dataDirFromEnv, dataPaths } from '../core/paths.js';
import { TARGET_HEADER } from '../core/target.js';
import { CliError } from './client-error.js';
import { trustedConnector, trustFromEnv, untrusted, type TlsTrust } from './tls-trust.js';

export { CliError } from './client-error.js';

export type Endpoint =
  | { kind: 'unix'; socket: string }
  | { kind: 'tcp'; url: URL; token: string | undefined; tokenFile: string; tls: TlsTrust };

export function endpointFromEnv(env: NodeJS.ProcessEnv = process.env): Endpoint {
  const paths = dataPaths(dataDirFromEnv(env));
  const raw = env.CORRAL_URL;
  if (!raw) return { kind: 'unix', socket: paths.socket };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`CORRAL_URL "${raw}" is not a URL (example: https://127.0.0.1:8443)`);
  }
  if (url.protocol === 'http:') throw new CliError(`CORRAL_URL must start with https://: the daemon serves TCP over TLS only, got "${raw}"`);
  if (url.protocol !== 'https:') throw new CliError(`CORRAL_URL must start with https://, got "${raw}"`);
  const tls = trustFromEnv(env);
  let token = env.CORRAL_TOKEN?.trim() || undefined;
  if (!token) {
    try {
      token = readFileSync(paths.token, 'utf8').trim() || undefined;
    } catch {
      token = undefined; // the daemon answers 401 UNAUTHORIZED, which says where the token lives
    }
  }
  return { kind: 'tcp', url, token, tokenFile: paths.token, tls };
}

/** The target host CORRAL_TARGET names, if any (empty: none). */
export function targetFromEnv(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.CORRAL_TARGET?.trim() || undefined;
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'ENOTDIR', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT']);

export class ApiClient {
  constructor(readonly endpoint: Endpoint = endpointFromEnv(), readonly target: string | undefined = targetFromEnv()) {
    // what a header may carry; the daemon or controller says whether it is a host name
    if (target !== undefined && !/^[\x21-\x7e]+$/.test(target)) {
      throw new CliError(target === '' ? '--target: a host name is required' : `--target: ${JSON.stringify(target)} is not a host name`, undefined, {}, 'USAGE');
    }
  }

  /** Where the daemon is: the socket path or the URL. */
  describe(): string {
    return this.endpoint.kind === 'unix' ? this.endpoint.socket : this.endpoint.url.origin;
  }

  headers(): Record<string, string> {
    const h: Record<string, string> = {};
    if (this.endpoint.kind === 'tcp' && this.endpoint.token) h.authorization = `Bearer ${this.endpoint.token}`;
    if (this.target !== undefined) h[TARGET_HEADER] = this.target;
    return h;
  }

  /** Turn a socket-level failure into the message a user can act on. */
  connectError(e: NodeJS.ErrnoException): CliError {
    const where = this.describe();
    if (e.code === 'EACCES' || e.code === 'EPERM') {
      return new CliError(`cannot reach the corral daemon at ${where}: permission denied (the API socket is for root; try sudo)`, undefined, {}, 'DAEMON_UNREACHABLE');
    }
    if (e instanceof CliError) return e;
    if (this.endpoint.kind === 'tcp' && untrusted(e)) {
      const how = this.endpoint.tls.caFile ? `a certificate that CORRAL_TLS_CA (${this.endpoint.tls.caFile}) does not vouch for` : this.endpoint.tls.fingerprint ? 'another certificate than the one pinned' : 'a certificate the system does not trust';
      return new CliError(`cannot trust the corral daemon at ${where}: it presented ${how} (${e.message}); set CORRAL_TLS_FINGERPRINT to the fingerprint the daemon logs (\`corral tls fingerprint\` on its host), or CORRAL_TLS_CA to the CA file that signed its certificate`, undefined, {}, 'TLS_UNTRUSTED');
    }
    if (e.code && UNREACHABLE.has(e.code)) {
      const how = this.endpoint.kind === 'unix' ? 'corral daemon' : `corral daemon --listen ${this.endpoint.url.host}`;
      return new CliError(`cannot reach the corral daemon at ${where}: is it running? (start it with: ${how})`, undefined, {}, 'DAEMON_UNREACHABLE');
    }
    return new CliError(`cannot reach the corral daemon at ${where}: ${e.message}`, undefined, {}, 'DAEMON_UNREACHABLE');
  }

  /** For the websocket client: a URL and options that reach the same daemon. */
  wsTarget(path: string): { url: string; headers: Record<string, string>; createConnection?: (...args: never[]) => Socket | undefined } {
    if (this.endpoint.kind === 'unix') {
      const socket = this.endpoint.socket;
      // Equivalent to ws+unix://SOCKET:PATH, but safe for socket paths with spaces or colons.
      return { url: `ws://localhost${path}`, headers: this.headers(), createConnection: () => connect(socket) };
    }
    const base = new URL(this.endpoint.url.href);
    base.protocol = 'wss:';
    return { url: new URL(path, base).href, headers: this.headers(), createConnection: this.tcpConnector() as (...args: never[]) => undefined };
  }

  /** TLS to the daemon's TCP API, handed over only once its certificate is trusted. */
  private tcpConnector(): ReturnType<typeof trustedConnector> {
    if (this.endpoint.kind !== 'tcp') throw new Error('not a TCP endpoint');
    const u = this.endpoint.url;
    return trustedConnector(u.hostname.replace(/^\[(.*)\]$/, '$1'), Number(u.port || 443), this.endpoint.tls);
  }

  /** Send a request; resolve with the response whatever its status. */
  open(method: string, path: string, body?: unknown): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json', ...this.headers() };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = httpRequest(this.options(method, path, headers), resolve);
      req.on('error', (e: NodeJS.ErrnoException) => reject(this.connectError(e)));
      req.end(payload);
    });
  }

  private options(method: string, path: string, headers: Record<string, string>): RequestOptions {
    if (this.endpoint.kind === 'unix') return { socketPath: this.endpoint.socket, path, method, headers };
    const u = this.endpoint.url;
    const prefix = u.pathname.replace(/\/+$/, '');
    headers.host = u.host;
    return { path: `${prefix}${path}`, method, headers, createConnection: this.tcpConnector() as RequestOptions['createConnection'] };
  }

  /**
   * Send a stream as the request's body (an archive or an image to import); resolve with the response (the API's error on a
   * status >= 400). The response may come while the body is still being sent: the daemon answers as it reads.
   */
  upload(method: string, path: string, body: NodeJS.ReadableStream, contentType: string, length: number | null): Promise<IncomingMessage> {
    const headers: Record<string, string> = { accept: 'application/json', 'content-type': contentType, ...this.headers() };
    if (length !== null) headers['content-length'] = String(length);
    return new Promise((resolve, reject) => {
      const req = httpRequest(this.options(method, path, headers), (res) => {
        // The answer is whole: a body the daemon refused part-way (an import of a name taken) is sent no further.
        // Left piping, the request would hold its socket, and this process, until the daemon's keep-alive timeout.
        res.on('end', () => {
          if (req.writableFinished) return;
          body.unpipe(req);
          (body as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
          req.destroy();
        });
        if ((res.statusCode ?? 500) < 400) return resolve(res);
        readAll(res).then((buf) => reject(apiError(res, buf)), reject);
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') return reject(this.connectError(e));
        // the daemon refused before reading it all: its answer (the reason) may still be on its way
        setTimeout(() => reject(new CliError('the daemon closed the upload before it ended')), 2000);
      });
      body.on('error', (e: Error) => {
        req.destroy();
        reject(new CliError(`cannot read the file to upload: ${e.message}`));
      });
      body.pipe(req);
    });
  }

  /** A JSON call: the parsed body on 2xx, a CliError carrying the API's code otherwise. */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.open(method, path, body);
    const buf = await readAll(res);
    if ((res.statusCode ?? 500) >= 400) throw apiError(res, buf);
    if (buf.length === 0) return undefined as T;
    try {
      return JSON.parse(buf.toString('utf8')) as T;
    } catch {
      throw new CliError(`the daemon answered ${method} ${path} with a body that is not JSON: ${preview(buf)}`);
    }
  }

  /** Raw bytes of a 2xx answer (the console log). */
  async bytes(method: string, path: string): Promise<Buffer> {
    const res = await this.open(method, path);
    const buf = await readAll(res);
    if ((res.statusCode ?? 500) >= 400) throw apiError(res, buf);
    return buf;
  }

  /** A streaming answer (ndjson, SSE): the open response on 2xx, the API's error otherwise. */
  async stream(method: string, path: string, body?: unknown): Promise<IncomingMessage> {
    const res = await this.open(method, path, body);
    if ((res.statusCode ?? 500) >= 400) throw apiError(res, await readAll(res));
    return res;
  }
}

export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer | string) => chunks.push(typeof c === 'string' ? Buffer.from(c) : c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

function preview(buf: Buffer): string {
  const s = buf.toString('utf8').trim();
  return s.length > 200 ? `${s.slice(0, 200)}...` : s || '(empty)';
}

/** An error body {"error":{"code","message",...}} (or anything else) -> CliError. */
export function apiError(res: IncomingMessage, buf: Buffer): CliError {
  const status = res.statusCode ?? 0;
  try {
    const parsed = JSON.parse(buf.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    const err = parsed.error;
    if (err && typeof err === 'object' && typeof err.message === 'string') {
      const { code, message, ...details } = err as Record<string, unknown>;
      return new CliError(message as string, typeof code === 'string' ? code : `HTTP_${status}`, details);
    }
  } catch {
    // not JSON: fall through
  }
  return new CliError(`HTTP ${status} ${res.statusMessage ?? ''}: ${preview(buf)}`.replace(/ +:/, ':'));
}

/** Split a byte stream into lines (\n or \r\n), calling onLine for each complete one. */
export function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      rest += chunk;
      let i: number;
      while ((i = rest.indexOf('\n')) >= 0) {
        const line = rest.slice(0, i).replace(/\r$/, '');
        rest = rest.slice(i + 1);
        try {
          onLine(line);
        } catch (e) {
          reject(e);
          return;
        }
      }
    });
    stream.on('end', () => {
      try {
        if (rest.length > 0) onLine(rest.replace(/\r$/, ''));
        resolve();
      } catch (e) {
        reject(e);
      }
    });
    stream.on('error', reject);
    stream.on('close', () => resolve());
  });
}
