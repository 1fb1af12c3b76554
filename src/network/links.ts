/** Reading the host's links, addresses and routes through `ip -j` (iproute2's JSON output). */
import { CorralError, isCorralError } from '../core/errors.js';
import type { HostRoutes } from '../core/networks.js';
import { ip, ipJson } from './exec.js';

/** The part of `ip -j -d link show` that Corral reads. */
export interface IpLink {
  ifname: string;
  flags?: string[];
  master?: string;
  operstate?: string;
  address?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
  addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }>;
}

function missing(e: unknown): boolean {
  return isCorralError(e) && /does not exist|Cannot find device/i.test(String(e.details.stderr ?? e.message));
}

/** One link with details, or null when there is none of that name. */
export async function getLink(name: string): Promise<IpLink | null> {
  try {
    const [l] = await ipJson<IpLink>(['-d', 'link', 'show', 'dev', name]);
    return l ?? null;
  } catch (e) {
    if (missing(e)) return null;
    throw e;
  }
}

export async function linkExists(name: string): Promise<boolean> {
  return (await getLink(name)) !== null;
}

/** `ip link del dev NAME`; already gone is fine. */
export async function deleteLink(name: string): Promise<void> {
  try {
    await ip(['link', 'del', 'dev', name]);
  } catch (e) {
    if (!missing(e)) throw e;
  }
}

/**
 * Roll back a link this call created: delete it, and return the error being unwound. When the delete fails
 * too, the error says so (message and details.leftBehind): the network layer has no log, and the link is
 * left on the host.
 */
export async function deleteLinkAfter(e: unknown, name: string): Promise<unknown> {
  try {
    await deleteLink(name);
    return e;
  } catch (err) {
    const why = `link ${name} could not be removed and was left behind (${err instanceof Error ? err.message : String(err)})`;
    if (isCorralError(e)) return new CorralError(e.code, `${e.message}; ${why}`, { ...e.details, leftBehind: name });
    if (e instanceof Error) e.message = `${e.message}; ${why}`;
    return e;
  }
}

/** The IPv4 addresses of a link, "ADDRESS/PREFIX". */
export async function ipv4Addresses(name: string): Promise<string[]> {
  const [l] = await ipJson<IpLink>(['-4', 'addr', 'show', 'dev', name]).catch((e: unknown) => {
    if (missing(e)) return [] as IpLink[];
    throw e;
  });
  return (l?.addr_info ?? []).filter((a) => a.local !== undefined).map((a) => `${a.local}/${a.prefixlen ?? 32}`);
}

/** The ports of a bridge. */
export async function portsOf(bridge: string): Promise<string[]> {
  const links = await ipJson<IpLink>(['link', 'show', 'master', bridge]);
  return links.map((l) => l.ifname).sort();
}

/** The host's IPv4 routes (main table) and addresses, for the overlap check. */
export async function hostRoutes(): Promise<HostRoutes> {
  const routes = await ipJson<{ dst?: string; dev?: string }>(['-4', 'route', 'show', 'table', 'main']);
  const links = await ipJson<IpLink>(['-4', 'addr', 'show']);
  return {
    routes: routes.filter((r) => typeof r.dst === 'string').map((r) => ({ dst: r.dst!, dev: r.dev ?? null })),
    addresses: links.flatMap((l) => (l.addr_info ?? []).filter((a) => a.local !== undefined).map((a) => ({ ifname: l.ifname, address: `${a.local}/${a.prefixlen ?? 32}` }))),
  };
}
