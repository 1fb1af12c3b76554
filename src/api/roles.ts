/**
 * The role each route needs, in one table. viewer: reads (GET) and the event stream; operator: instances and
 * everything about them (disks, NICs, CPU, memory, the console, which writes to the guest) and volumes; admin: the
 * host (passthrough devices, SR-IOV, networks, images, vhost-user back ends) and tokens and the audit log. FAIL CLOSED: a route missing
 * here needs admin (test/unit/api/roles.test.ts checks that every route is here). HEAD goes as its GET. A cluster
 * controller answers to the same table: its own routes (hosts, join tokens) are here too, and the calls it forwards
 * to an agent are checked by the route the agent would match (pathRule).
 */
import type { FastifyInstance } from 'fastify';
import type { Role } from '../core/tokens.js';

export interface RouteRule {
  role: Role;
  /** a stronger role that some bodies need, and why (checked once the body is parsed) */
  escalate?: (body: unknown) => { role: Role; why: string } | null;
  /** served to anyone, without credentials (the web console's page and its login, which checks the token itself) */
  anonymous?: true;
}

const field = (body: unknown, key: string): unknown => (body !== null && typeof body === 'object' ? (body as Record<string, unknown>)[key] : undefined);

/** A NIC that takes a host VF (sriov) or connects QEMU to a socket on the host (vhost-user-net) touches the host. */
function hostNic(body: unknown): { role: Role; why: string } | null {
  const model = field(body, 'model');
  if (model === 'sriov' || field(body, 'pf') !== undefined) return { role: 'admin', why: 'an SR-IOV NIC takes a virtual function of a host NIC' };
  if (model === 'vhost-user-net' || field(body, 'backend') !== undefined) return { role: 'admin', why: 'a vhost-user-net NIC connects QEMU to a vhost-user back end on the host' };
  return null;
}

const viewer: RouteRule = { role: 'viewer' };
const operator: RouteRule = { role: 'operator' };
const admin: RouteRule = { role: 'admin' };
const anyone: RouteRule = { role: 'viewer', anonymous: true };

export const ROUTE_ROLES: Readonly<Record<string, RouteRule>> = {
  // the web console (TCP only): its page and files, its login (which checks the token it is given), who is logged in
  // and the logout (src/api/web.ts, src/api/sessions.ts)
  'GET /': anyone,
  'GET /assets/*': anyone,
  'POST /v1/session': anyone,
  'GET /v1/session': viewer,
  'DELETE /v1/session': viewer,

  'GET /openapi.json': viewer,
  'GET /metrics': viewer,
  'GET /v1/events': viewer,
  'GET /v1/host': viewer,
  'GET /v1/pool': viewer,
  'GET /v1/history': viewer,
  // moves instances between any hosts of the cluster (a controller's; a daemon refuses it)
  'POST /v1/pool/rebalance': admin,

  'GET /v1/instances': viewer,
  'POST /v1/instances': operator,
  'GET /v1/instances/:name': viewer,
  'PATCH /v1/instances/:name': operator,
  'DELETE /v1/instances/:name': operator,
  'POST /v1/instances/:name/start': operator,
  // copies and archives of an instance (routes-copies.ts); an image made of one is the host's: admin's, as images
  'POST /v1/instances/:name/copy': operator,
  'POST /v1/instances/:name/export': operator,
  'GET /v1/exports/:id': operator,
  'POST /v1/instances/import': operator,
  'POST /v1/instances/:name/publish': admin,
  'POST /v1/instances/:name/stop': operator,
  'POST /v1/instances/:name/restart': operator,
  'POST /v1/instances/:name/pause': operator,
  'POST /v1/instances/:name/resume': operator,
  'POST /v1/instances/:name/kill': operator,
  'GET /v1/instances/:name/devices': viewer,
  // runs a command in the guest (as the agent's user, root in most guests): what the console allows too
  'POST /v1/instances/:name/exec': operator,
  // live migration: a host's side (a controller drives it) and the controller's own routes
  'POST /v1/instances/:name/migration/incoming': operator,
  'POST /v1/instances/:name/migration': operator,
  'GET /v1/instances/:name/migration': viewer,
  'POST /v1/instances/:name/migration/cancel': operator,
  'POST /v1/instances/:name/migration/finish': operator,
  'GET /v1/instances/:name/migration/facts': viewer,
  'POST /v1/instances/:name/migration/resume-source': operator,
  'POST /v1/instances/:name/migration/postcopy': operator,
  // local disks moving with it (routes-migration-disks.ts); an image's files leave or join a host: admin's, as images
  'GET /v1/instances/:name/migration/disks': operator,
  'POST /v1/instances/:name/migration/disks/check': operator,
  'POST /v1/instances/:name/migration/disks/mirror': operator,
  'GET /v1/instances/:name/migration/disks/mirror': viewer,
  'POST /v1/instances/:name/migration/disks/complete': operator,
  'POST /v1/instances/:name/migration/disks/abort': operator,
  'GET /v1/instances/:name/migration/image/:role': admin,
  'POST /v1/instances/:name/migration/image': admin,
  'PUT /v1/instances/:name/migration/image/:role': admin,
  'POST /v1/instances/:name/migration/image/commit': admin,
  'POST /v1/instances/:name/migrate': operator,
  'POST /v1/instances/:name/migrate/cancel': operator,
  // a stopped instance moved between hosts (a host's side; a controller drives it for host evacuate)
  'POST /v1/instances/:name/move-in': operator,
  'GET /v1/instances/:name/console/log': viewer,
  // the websocket: what is typed goes to the guest
  'GET /v1/instances/:name/console': operator,
  // the graphical console's websocket (VNC): keys and the mouse go to the guest
  'GET /v1/instances/:name/vnc': operator,
  'GET /v1/instances/:name/cpu': viewer,
  'POST /v1/instances/:name/cpus': operator,
  'GET /v1/instances/:name/memory': viewer,
  'GET /v1/instances/:name/history': viewer,
  'POST /v1/instances/:name/memory': operator,
  'GET /v1/instances/:name/disks': viewer,
  'POST /v1/instances/:name/disks': operator,
  'DELETE /v1/instances/:name/disks/:volume': operator,
  'GET /v1/instances/:name/snapshots': viewer,
  'POST /v1/instances/:name/snapshots': operator,
  'POST /v1/instances/:name/snapshots/:snap/restore': operator,
  'DELETE /v1/instances/:name/snapshots/:snap': operator,
  'GET /v1/instances/:name/nics': viewer,
  'GET /v1/instances/:name/nic-stats': viewer,
  'POST /v1/instances/:name/nics': { role: 'operator', escalate: hostNic },
  'DELETE /v1/instances/:name/nics/:nic': operator,
  'GET /v1/instances/:name/hostdevs': viewer,
  'POST /v1/instances/:name/hostdevs': admin,
  'DELETE /v1/instances/:name/hostdevs/:hostdev': admin,

  'GET /v1/volumes': viewer,
  'POST /v1/volumes': operator,
  'GET /v1/volumes/:name': viewer,
  'DELETE /v1/volumes/:name': operator,
  'POST /v1/volumes/:name/resize': operator,
  'POST /v1/volumes/:name/clone': operator,
  'GET /v1/volumes/:name/snapshots': viewer,
  'POST /v1/volumes/:name/snapshots': operator,
  'POST /v1/volumes/:name/snapshots/:snap/revert': operator,
  'DELETE /v1/volumes/:name/snapshots/:snap': operator,

  'GET /v1/images': viewer,
  'GET /v1/images/:name': viewer,
  'POST /v1/images': admin,
  'POST /v1/images/:name/upload': admin,
  'POST /v1/images/build-tiny': admin,
  'DELETE /v1/images/:name': admin,

  'GET /v1/networks': viewer,
  'GET /v1/networks/:name': viewer,
  'POST /v1/networks': admin,
  'DELETE /v1/networks/:name': admin,

  'GET /v1/host/devices': viewer,
  'GET /v1/host/sriov/:pf': viewer,
  'POST /v1/host/sriov': admin,

  // vhost-user back ends: which host sockets a guest's memory may be handed to
  'GET /v1/vhost-user': viewer,
  'GET /v1/vhost-user/:name': viewer,
  'POST /v1/vhost-user': admin,
  'DELETE /v1/vhost-user/:name': admin,

  'GET /v1/tokens': admin,
  'POST /v1/tokens': admin,
  'DELETE /v1/tokens/:name': admin,
  'GET /v1/audit': admin,

  // a cluster controller's own routes (src/cluster/controller-api.ts); its agents' routes (join, heartbeat, the CA)
  // check their callers themselves and are not here
  'GET /v1/hosts': viewer,
  'GET /v1/hosts/:name': viewer,
  'GET /v1/hosts/:name/events': viewer,
  'POST /v1/hosts/:name/maintenance': admin,
  'POST /v1/hosts/:name/evacuate': admin,
  'PATCH /v1/hosts/:name': admin,
  'DELETE /v1/hosts/:name': admin,
  'POST /v1/cluster/join-tokens': admin,
  'GET /v1/cluster/settings': viewer,
  'PATCH /v1/cluster/settings': admin,
};

const key = (method: string, url: string): string => `${method === 'HEAD' ? 'GET' : method} ${url}`;

/** Whether the table names a route (the test's check that nothing falls back to admin unnoticed). */
export function declared(method: string, url: string): boolean {
  return Object.hasOwn(ROUTE_ROLES, key(method, url));
}

/** What a route needs: its rule, or admin when the table does not name it (fail closed). */
export function routeRule(method: string, url: string): RouteRule {
  return declared(method, url) ? ROUTE_ROLES[key(method, url)]! : admin;
}

const patterns = Object.keys(ROUTE_ROLES).map((k) => {
  const [method, url] = k.split(' ') as [string, string];
  return { method, url, segments: url.split('/') };
});

/**
 * The table's route that a request's method and path (no query string) would match on a daemon, and its rule: a
 * `:param` segment matches any non-empty segment, others only themselves (of two matches, the one with more
 * literal segments, as the router prefers static routes). A path matching no route is null: its caller needs
 * admin (fail closed). A segment is compared as sent: one that a router would decode into a literal
 * (`%73tart`) matches nothing here, so it too needs admin; so does `.` or `..` (or `%2e%2e`), which a URL resolves away.
 */
export function pathRule(method: string, path: string): { route: string; rule: RouteRule } | null {
  const m = method === 'HEAD' ? 'GET' : method;
  const given = path.split('/');
  let best: { route: string; rule: RouteRule; literal: number } | null = null;
  for (const p of patterns) {
    if (p.method !== m || p.segments.length !== given.length) continue;
    let literal = 0;
    const fits = p.segments.every((seg, i) => {
      if (seg.startsWith(':')) return given[i] !== '' && !/^(\.|%2e){1,2}$/i.test(given[i]!);
      literal++;
      return seg === given[i];
    });
    if (fits && (!best || literal > best.literal)) best = { route: `${m} ${p.url}`, rule: ROUTE_ROLES[`${m} ${p.url}`]!, literal };
  }
  return best && { route: best.route, rule: best.rule };
}

const registered = new WeakMap<FastifyInstance, Array<{ method: string; url: string }>>();

/** Keep a list of every route the API registers from now on (HEAD ones too), for `registeredRoutes`. */
export function recordRoutes(app: FastifyInstance): void {
  const list: Array<{ method: string; url: string }> = [];
  registered.set(app, list);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) list.push({ method: String(method), url: r.url });
  });
}

/** Every route an API registered (the roles test walks them: each must be in the table). */
export function registeredRoutes(app: FastifyInstance): ReadonlyArray<{ method: string; url: string }> {
  return registered.get(app) ?? [];
}
