/**
 * Tap devices for VM NICs: persistent (`ip tuntap add`), made and enslaved to their network's bridge before
 * QEMU opens them by name (`-netdev tap,ifname=...,script=no`), so QEMU never runs a script. The caller chooses the names; they are checked here
 * (at most 15 characters of a-z, 0-9 and '-').
 */
import { chmodSync, statSync } from 'node:fs';
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

/** The user and group a tap is made for: QEMU's unprivileged user (src/host/run-as.ts) opens it without CAP_NET_ADMIN. */
export interface TapOwner {
  user: string;
  uid: number;
  gid: number;
}

/** Does the tap belong to `o`? `ip` shows the owner by name, or by number when it has no name. */
function ownedBy(l: IpLink, o: TapOwner | undefined): boolean {
  if (o === undefined) return true;
  const d = l.linkinfo?.info_data ?? {};
  return (d.user === o.uid || d.user === o.user) && (d.group === o.gid || d.group === o.user);
}

/**
 * Make tap IFNAME a port of BRIDGE and up, owned by `owner` (the only user that can then open it besides root).
 * An existing tap is reused (re-made when its multi_queue flag or owner differs from the one asked for: QEMU
 * cannot open it otherwise); a link of that name that is not a tap is refused.
 */
export async function createTap(ifname: string, bridge: string, opts: { multiQueue?: boolean; owner?: TapOwner } = {}): Promise<{ created: boolean }> {
  validateIfname('ifname', ifname);
  validateIfname('bridge', bridge);
  const mq = opts.multiQueue ?? false;
  let link = await getLink(ifname);
  if (link !== null && !isTap(link)) {
    throw new CorralError('NETWORK_CONFLICT', `host interface ${ifname} exists and is not a tap: Corral will not use it`, { dev: ifname });
  }
  if (link !== null && (info(link).multiQueue !== mq || !ownedBy(link, opts.owner))) {
    await deleteLink(ifname);
    link = null;
  }
  const created = link === null;
  const owner = opts.owner ? ['user', String(opts.owner.uid), 'group', String(opts.owner.gid)] : [];
  if (created) await ip(['tuntap', 'add', 'dev', ifname, 'mode', 'tap', ...(mq ? ['multi_queue'] : []), ...owner]);
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

/**
 * QEMU's unprivileged user opens the taps made for it through /dev/net/tun, which udev makes 0666 on standard
 * hosts (opening it grants nothing: making a tap needs CAP_NET_ADMIN, attaching to one needs to be its owner).
 * Where it is not (a container without udev), make it so. Returns whether the mode was changed.
 */
export function ensureTunOpenable(dev = '/dev/net/tun'): boolean {
  let mode: number;
  try {
    mode = statSync(dev).mode & 0o777;
  } catch {
    return false; // no tun device: bridge NICs fail with QEMU's own message
  }
  if ((mode & 0o666) === 0o666) return false;
  chmodSync(dev, 0o666);
  return true;
}
