/**
 * Which of a controller's requests are the cluster's and which are one host's. A controller answers for the
 * cluster: instances (placed, listed and forwarded by their host), the pool, events, tokens, the audit log, the
 * hosts. What each host holds for itself (its images, volumes, networks, vhost-user back ends, the host's facts
 * and devices) is asked of that host's agent, named by the request's target (src/core/target.ts); without one, a
 * list of images, volumes or networks is the union over the hosts, and anything else is TARGET_REQUIRED.
 */

/** The first segment after /v1/ of the paths each host serves for itself (src/api/routes-*.ts, GET /v1/host). */
export const PER_HOST_PREFIXES = ['images', 'volumes', 'networks', 'host', 'vhost-user'] as const;

/** The per-host lists a controller answers without a target, over every host: path -> the key of its array. */
export const UNION_LISTS: Readonly<Record<string, string>> = { '/v1/images': 'images', '/v1/volumes': 'volumes', '/v1/networks': 'networks' };

const segments = (path: string): string[] => path.split('?')[0]!.split('/');

/** Whether a path (a query string allowed) is one host's own: /v1/PREFIX or below it, for a PER_HOST_PREFIXES prefix. */
export function perHostPath(path: string): boolean {
  const s = segments(path);
  return s[0] === '' && s[1] === 'v1' && s.length >= 3 && (PER_HOST_PREFIXES as readonly string[]).includes(s[2]!);
}

/** The key of the array a request answers as a union over the hosts (GET or HEAD of a UNION_LISTS path), else null. */
export function unionListKey(method: string, path: string): string | null {
  if (method !== 'GET' && method !== 'HEAD') return null;
  return UNION_LISTS[path.split('?')[0]!] ?? null;
}

/**
 * Whether a path has a segment that a URL resolves away (`.`, `..`, or the same percent-encoded: `%2e%2E`): the
 * agent would be asked for another path than the one the role check saw, so it is never forwarded.
 */
export function hasDotSegment(path: string): boolean {
  return segments(path).some((s) => /^(\.|%2e){1,2}$/i.test(s));
}
