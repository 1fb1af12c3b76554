/**
 * Browser sessions of the web console, pure: the session cookie (its name, how it is set and cleared, how it is read
 * back) and the cross-site request rules a request that a cookie authenticates must pass. Keeping sessions and
 * looking them up is the session store's (src/services/sessions.ts); the hooks that apply these rules are the API's.
 */

/**
 * The cookie's name on the listener at `port`. `__Host-` makes the browser take it only over HTTPS, for this host
 * alone (no Domain) and for the whole site (Path=/). The port is in the name because cookies are not kept apart
 * by port: two daemons on one machine (127.0.0.1:8443 and :8444) would otherwise overwrite each other's.
 */
export function sessionCookieName(port: number | undefined): string {
  return `__Host-corral-session${port ? `-${port}` : ''}`;
}

/** The Set-Cookie value that hands a session id to the browser, kept for `maxAgeS` seconds at most. */
export function sessionCookie(name: string, id: string, maxAgeS: number): string {
  return `${name}=${id}; Path=/; Max-Age=${Math.max(0, Math.floor(maxAgeS))}; HttpOnly; Secure; SameSite=Strict`;
}

/** The Set-Cookie value that makes the browser drop the session cookie (logout). */
export function clearedSessionCookie(name: string): string {
  return `${name}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict`;
}

/** One cookie's value from a Cookie header ("a=1; b=2"), or null when it is not there. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** Methods that change nothing: they need no CSRF header. */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The header a browser session's state-changing requests carry its CSRF token in. */
export const CSRF_HEADER = 'x-corral-csrf';

/** What the cross-site checks look at in a request. */
export interface CrossSiteFacts {
  method: string;
  /** the Host header: the API is TLS only, so its own origin is https://HOST */
  host: string | undefined;
  origin: string | undefined;
  /** Sec-Fetch-Site, which browsers send over HTTPS: same-origin, same-site, cross-site or none */
  fetchSite: string | undefined;
  /** a websocket upgrade (browsers always send Origin with one) */
  upgrade: boolean;
}

/** Whether `origin` (an Origin header) is this API's own origin, https://HOST. */
export function sameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  try {
    const o = new URL(origin);
    const own = new URL(`https://${host}`);
    return o.protocol === 'https:' && o.host === own.host;
  } catch {
    return false;
  }
}

/**
 * Why a request from a browser must be refused as possibly forged by another site, or null when it may go on. A
 * page of another origin (another site, or another port of this one: a guest's web server forwarded to
 * 127.0.0.1:8080 is the same site as a daemon on 127.0.0.1:8443, so SameSite cookies do not keep it out) is
 * refused whatever it asks: an Origin that is not this API's, or a Sec-Fetch-Site other than same-origin or none
 * (typed into the address bar). A websocket must say where it comes from (its Origin), since a page of any origin
 * can open one. State-changing requests must also carry the session's CSRF token (checked by the caller, who
 * knows it): another origin cannot read it.
 */
export function crossSiteRefusal(f: CrossSiteFacts): string | null {
  if (f.origin !== undefined && !sameOrigin(f.origin, f.host)) return `the request comes from another origin (${f.origin.slice(0, 100)}), not from this daemon's own pages`;
  if (f.fetchSite !== undefined && f.fetchSite !== 'same-origin' && f.fetchSite !== 'none') return `the browser says the request comes from another site (Sec-Fetch-Site: ${f.fetchSite.slice(0, 40)})`;
  if (f.upgrade && f.origin === undefined) return 'a websocket opened with a browser session must say its Origin';
  return null;
}
