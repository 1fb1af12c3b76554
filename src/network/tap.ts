/**
 * Tap devices for VM NICs: persistent (`ip tuntap add`), made and enslaved to their network's bridge before
 * QEMU opens them by name (`-netdev tap,ifname=...,script=no`), so QEMU never runs a script. The caller chooses the names; they are checked here
 * (at most 15 characters of a-z, 0-9 and '-').
 */
import { CorralError } from '../core/errors.js';
import { validateIfname } from '../core/networks.js';
import { ip, ipJson } from './exec.js';
import { deleteLink, deleteLinkAfter, getLink, type IpLink } from './links.js';

export interface TapInfo {
  ifname: string;
  /** the bridge it is a port of, or null */
  master: string | null;
  up: boolean;
  multiQueue: boolean;
}

function isTap(l: IpLink): boolean {
  return l.linkinfo?.info_kind === 'tun' && l.linkinfo.info_data?.type === 'tap';
}

function info(l: IpLink): TapInfo {
  return { ifname: l.ifname, master: l.master ?? null, up: (l.flags ?? []).includes('UP'), multiQueue: l.linkinfo?.info_data?.multi_queue === true };
}

/**
 * Make tap IFNAME a port of BRIDGE and up. An existing tap is reused (re-made when its multi_queue flag differs
 * from the one asked for: QEMU cannot open it otherwise); a link of that name that is not a tap is refused.
 */
export async function createTap(ifname: string, bridge: string, opts: { multiQueue?: boolean } = {}): Promise<{ created: boolean }> {
  validateIfname('ifname', ifname);
  validateIfname('bridge', bridge);
  const mq = opts.multiQueue ?? false;
  let link = await getLink(ifname);
  if (link !== null && !isTap(link)) {
    throw new CorralError('NETWORK_CONFLICT', `host interface ${ifname} exists and is not a tap: Corral will not use it`, { dev: ifname });
  }
  if (link !== null && info(link).multiQueue !== mq) {
    await deleteLink(ifname);
    link = null;
  }
  const created = link === null;
  if (created) await ip(['tuntap', 'add', 'dev', ifname, 'mode', 'tap', ...(mq ? ['multi_queue'] : [])]);
  try {
    await ip(['link', 'set', 'dev', ifname, 'master', bridge, 'up']);
  } catch (e) {
    throw created ? await deleteLinkAfter(e, ifname) : e;
  }
  return { created };
}

/** Delete a tap; a missing one is fine, a link of that name that is not a tap is refused. */
export async function deleteTap(ifname: string): Promise<void> {
  validateIfname('ifname', ifname);
  const link = await getLink(ifname);
  if (link === null) return;
  if (!isTap(link)) throw new CorralError('NETWORK_CONFLICT', `host interface ${ifname} is not a tap: Corral will not delete it`, { dev: ifname });
  await deleteLink(ifname);
}

/** Taps whose names start with prefix. */
export async function listTaps(prefix = ''): Promise<TapInfo[]> {
  const links = await ipJson<IpLink>(['-d', 'link', 'show', 'type', 'tun']);
  return links.filter((l) => isTap(l) && l.ifname.startsWith(prefix)).map(info).sort((a, b) => a.ifname.localeCompare(b.ifname));
}
