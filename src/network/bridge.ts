/**
 * Linux bridges of bridge networks: `ip link add NAME address MAC type bridge`, the gateway address, up.
 * Every function is idempotent: creating an existing bridge only corrects its address and state, deleting a
 * missing one is fine. A link of the bridge's name that is not a bridge is refused, never touched.
 */
import { CorralError } from '../core/errors.js';
import { validateIfname } from '../core/networks.js';
import { ip } from './exec.js';
import { deleteLink, deleteLinkAfter, getLink, ipv4Addresses, portsOf } from './links.js';

export interface BridgeConfig {
  name: string;
  /** fixed MAC, so the gateway's MAC does not follow its ports */
  mac: string;
  gateway: string;
  prefix: number;
}

export interface BridgeState {
  name: string;
  exists: boolean;
  up: boolean;
  /** IPv4 addresses on it, ADDRESS/PREFIX */
  addresses: string[];
  /** its ports (taps of VMs) */
  ports: string[];
}

/** Create the bridge if missing, give it exactly the gateway address (other IPv4 addresses go), set it up. */
export async function createBridge(b: BridgeConfig): Promise<{ created: boolean }> {
  validateIfname('bridge', b.name);
  const link = await getLink(b.name);
  let created = false;
  if (link === null) {
    await ip(['link', 'add', 'name', b.name, 'address', b.mac, 'type', 'bridge']);
    created = true;
  } else if (link.linkinfo?.info_kind !== 'bridge') {
    throw new CorralError('NETWORK_CONFLICT', `host interface ${b.name} exists and is not a bridge (${link.linkinfo?.info_kind ?? 'a device'}): Corral will not use it`, { dev: b.name });
  }
  try {
    const want = `${b.gateway}/${b.prefix}`;
    for (const a of await ipv4Addresses(b.name)) if (a !== want) await ip(['addr', 'del', a, 'dev', b.name]);
    await ip(['addr', 'replace', want, 'dev', b.name]);
    await ip(['link', 'set', 'dev', b.name, 'up']);
  } catch (e) {
    throw created ? await deleteLinkAfter(e, b.name) : e;
  }
  return { created };
}

/** Delete the bridge (its ports are let go, not deleted); a missing one is fine. */
export async function deleteBridge(name: string): Promise<void> {
  validateIfname('bridge', name);
  const link = await getLink(name);
  if (link === null) return;
  if (link.linkinfo?.info_kind !== 'bridge') throw new CorralError('NETWORK_CONFLICT', `host interface ${name} is not a bridge: Corral will not delete it`, { dev: name });
  await deleteLink(name);
}

export async function bridgeExists(name: string): Promise<boolean> {
  const link = await getLink(name);
  return link !== null && link.linkinfo?.info_kind === 'bridge';
}

export async function bridgeState(name: string): Promise<BridgeState> {
  const link = await getLink(name);
  if (link === null || link.linkinfo?.info_kind !== 'bridge') return { name, exists: false, up: false, addresses: [], ports: [] };
  return { name, exists: true, up: (link.flags ?? []).includes('UP'), addresses: await ipv4Addresses(name), ports: await portsOf(name) };
}
