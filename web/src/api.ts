/**
 * The page's calls to the daemon's API, on its own origin. The session cookie goes with every call by itself
 * (HttpOnly: this code never sees it); calls that change something carry the session's CSRF token, which the login
 * and GET /v1/session return. An API error keeps its code, message and the field at fault (INVALID_SPEC).
 */
import type { Session } from './types';

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string, readonly body?: unknown) {
    super(message);
  }
}

let csrf: string | null = null;
let onLoggedOut: () => void = () => undefined;

/** Remember the session's CSRF token (null after logout). */
export function setCsrf(token: string | null): void {
  csrf = token;
}

/** What to do when the API says the session is over (401): show the login again. */
export function whenLoggedOut(fn: () => void): void {
  onLoggedOut = fn;
}

async function parse(r: Response): Promise<unknown> {
  const text = await r.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** The header that names the host a call is for, through a controller (src/core/target.ts: the CLI's --target). */
const TARGET_HEADER = 'x-corral-target';

/** `target`: through a controller, the host whose own image, volume or network the call is about. */
export async function api<T>(method: string, path: string, body?: unknown, target?: string): Promise<T> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (target) headers[TARGET_HEADER] = target;
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['x-corral-csrf'] = csrf;
  const r = await fetch(path, { method, headers, credentials: 'same-origin', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const data = await parse(r);
  if (!r.ok) {
    const e = (data as { error?: { code?: string; message?: string; field?: string } } | null)?.error;
    if (r.status === 401 && path !== '/v1/session') onLoggedOut();
    throw new ApiError(r.status, e?.code ?? `HTTP_${r.status}`, e?.message ?? String(data).slice(0, 300), e?.field, data);
  }
  return data as T;
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);
export const enc = encodeURIComponent;

export async function login(token: string): Promise<Session> {
  const s = await api<Session>('POST', '/v1/session', { token });
  setCsrf(s.csrf);
  return s;
}

/** Who the cookie says the caller is, or null when there is no live session. */
export async function currentSession(): Promise<Session | null> {
  try {
    const s = await get<Session>('/v1/session');
    setCsrf(s.csrf);
    return s;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export async function logout(): Promise<void> {
  try {
    await api('DELETE', '/v1/session');
  } finally {
    setCsrf(null);
  }
}

/** The bytes the guest wrote to its serial console so far. */
export async function consoleLog(name: string): Promise<Uint8Array> {
  const r = await fetch(`/v1/instances/${enc(name)}/console/log`, { credentials: 'same-origin' });
  if (!r.ok) return new Uint8Array();
  return new Uint8Array(await r.arrayBuffer());
}

/** A line of a job's reply (JSON lines): progress, then one result or one error. */
export interface JobLine { type: 'progress' | 'result' | 'error'; step?: string; message?: string; percent?: number; error?: { code: string; message: string; field?: string }; [k: string]: unknown }

/**
 * POST a file as the body (application/octet-stream) to a route that answers with a job's JSON lines: `onSent`
 * follows the upload (XMLHttpRequest's upload progress, 0..1), `onLine` each line as it comes. Resolves with the
 * result line; a refusal (before the stream, or its error line) is an ApiError with the code and field. `target`: as
 * for api(), the host it goes to through a controller (which relays the body to it as it comes).
 */
export function uploadJob(path: string, file: Blob, onSent: (fraction: number) => void, onLine: (l: JobLine) => void, target?: string): Promise<JobLine> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    if (target) xhr.setRequestHeader(TARGET_HEADER, target);
    if (csrf) xhr.setRequestHeader('x-corral-csrf', csrf);
    let seen = 0;
    let last: JobLine | null = null;
    const lines = (): void => {
      if (xhr.status !== 200) return;
      const text = xhr.responseText;
      let nl: number;
      while ((nl = text.indexOf('\n', seen)) >= 0) {
        const raw = text.slice(seen, nl);
        seen = nl + 1;
        try {
          last = JSON.parse(raw) as JobLine;
        } catch {
          continue;
        }
        onLine(last);
      }
    };
    xhr.upload.onprogress = (e) => { if (e.lengthComputable && e.total > 0) onSent(e.loaded / e.total); };
    xhr.upload.onload = () => onSent(1);
    xhr.onprogress = lines;
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload failed: the connection to the daemon was lost'));
    xhr.onload = () => {
      if (xhr.status !== 200) {
        let data: unknown = xhr.responseText;
        try { data = JSON.parse(xhr.responseText) as unknown; } catch { /* not JSON */ }
        const e = (data as { error?: { code?: string; message?: string; field?: string } } | null)?.error;
        if (xhr.status === 401) onLoggedOut();
        reject(new ApiError(xhr.status, e?.code ?? `HTTP_${xhr.status}`, e?.message ?? String(data).slice(0, 300), e?.field, data));
        return;
      }
      lines();
      const end = last as JobLine | null;
      if (end?.type === 'result') resolve(end);
      else if (end?.type === 'error' && end.error) reject(new ApiError(200, end.error.code, end.error.message, end.error.field, end));
      else reject(new ApiError(200, 'INTERNAL', 'the job ended without a result'));
    };
    xhr.send(file);
  });
}
