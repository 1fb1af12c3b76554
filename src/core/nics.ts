/**
 * Network interfaces of an instance: the models a user picks (one per approach), their QEMU ids and host tap
 * names, stable MAC addresses, port forwards on the user network, and the checks an attach must pass. Pure:
 * what the host has (/dev/vhost-net, a listening socket, the registered vhost-user back ends, a free address on
 * a bridge network) comes in as arguments.
 */
import { createHash } from 'node:crypto';
import { CorralError, invalidSpec } from './errors.js';
import { printable, validateName } from './names.js';
import { NIC_MODELS, type InstanceNic, type NicModel, type PortForward } from './spec-schema.js';

export { NIC_MODELS, type NicModel, type InstanceNic, type PortForward };

/** The network every instance gets unless told otherwise: QEMU user-mode NAT. */
export const DEFAULT_NETWORK = 'default';
export const MAX_NICS = 8;
export const MAX_QUEUES = 16;

/** What an attach request carries. */
export interface NicRequest {
  network?: string;
  model?: string;
  queues?: number;
  /** vhost-user-net: the name of a registered vhost-user back end */
  backend?: string;
  pf?: string;
  vlan?: number;
  mac?: string;
  forwards?: string[];
}

/** What the host offers, for the checks. */
export interface NicHost {
  /** the kind of a network by name; throws NETWORK_NOT_FOUND */
  networkKind(name: string): 'user' | 'bridge';
  vhostNet: boolean;
  /** is there a listening unix socket at this path? */
  isSocket(path: string): boolean;
  /** the vhost-user back end an admin registered under this name; INVALID_SPEC on field backend when there is none */
  vhostUserBackend(name: string): { name: string; socket: string };
  /** a free address of a bridge network's range for a new NIC; INSUFFICIENT_RESOURCES naming the network when none is left */
  reserveAddress(network: string): string;
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function parseModel(model: unknown): NicModel {
  if (model === undefined || model === null) return 'virtio-net';
  if (typeof model !== 'string' || !(NIC_MODELS as readonly string[]).includes(model)) {
    throw invalidSpec('model', `"${printable(String(model))}" is not a NIC model: use ${NIC_MODELS.join(', ')}`);
  }
  return model as NicModel;
}

/** Host ports below this need root to bind: a forward may not take one (a guest would pose as a system service). */
export const MIN_FORWARD_HOST_PORT = 1024;
/** Where a forward listens when its spec names no host address: this host only. */
export const DEFAULT_FORWARD_ADDR = '127.0.0.1';

/**
 * "tcp:2222:22", "udp:127.0.0.1:5353:53", "tcp:0.0.0.0:2222:22" (every address) or "8080:80" (tcp) -> a port
 * forward. Without a host address it listens on 127.0.0.1 only; host ports below 1024 are refused.
 */
export function parseForward(spec: unknown): PortForward {
  if (typeof spec !== 'string') throw invalidSpec('forwards', 'each forward is a string such as tcp:2222:22');
  const parts = spec.split(':');
  let proto: 'tcp' | 'udp' = 'tcp';
  if (parts[0] === 'tcp' || parts[0] === 'udp') proto = parts.shift() as 'tcp' | 'udp';
  const hostAddr = parts.length === 3 ? parts.shift()! : DEFAULT_FORWARD_ADDR;
  if (parts.length !== 2) throw invalidSpec('forwards', `"${printable(spec)}" is not [tcp|udp:][HOSTADDR:]HOSTPORT:GUESTPORT`);
  const octets = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(hostAddr);
  if (!octets || octets.slice(1).some((o) => Number(o) > 255)) throw invalidSpec('forwards', `"${printable(hostAddr)}" is not an IPv4 address`);
  const port = (s: string): number => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < 1 || n > 65535) throw invalidSpec('forwards', `"${printable(s)}" is not a port (1..65535)`);
    return n;
  };
  const hostPort = port(parts[0]!);
  if (hostPort < MIN_FORWARD_HOST_PORT) throw invalidSpec('forwards', `host port ${hostPort} is privileged: forward from a host port of ${MIN_FORWARD_HOST_PORT} or more`);
  return { proto, hostAddr, hostPort, guestPort: port(parts[1]!) };
}

/** QEMU's hostfwd text of a forward: tcp:ADDR:HOSTPORT-:GUESTPORT. */
export function hostfwd(f: PortForward): string {
  return `${f.proto}:${f.hostAddr}:${f.hostPort}-:${f.guestPort}`;
}

/**
 * A stable, locally administered MAC in QEMU's 52:54:00 range for NIC `index` of the instance: index 0 keeps
 * the address instances always had (sha256 of the uuid); others hash uuid/index. `taken` are MACs already in
 * use on this host: on a collision the next candidate is taken.
 */
export function macFor(uuid: string, index = 0, taken: Pick<ReadonlySet<string>, 'has'> = new Set()): string {
  for (let n = 0; ; n++) {
    const seed = index === 0 && n === 0 ? uuid : `${uuid}/${index}/${n}`;
    const h = createHash('sha256').update(seed).digest();
    const mac = ['52', '54', '00', h[0]!, h[1]!, h[2]!].map((b) => (typeof b === 'number' ? b.toString(16).padStart(2, '0') : b)).join(':');
    if (!taken.has(mac)) return mac;
  }
}

/** The host tap device of a NIC: `ct` + 8 hex of the instance uuid + the NIC number (<= 15 characters). */
export function tapName(uuid: string, nicId: string): string {
  return `ct${uuid.replace(/-/g, '').slice(0, 8)}${nicId.replace(/^net/, 'n')}`;
}

/** The next free NIC id. */
export function nextNicId(nics: readonly InstanceNic[]): string {
  for (let i = 0; ; i++) if (!nics.some((n) => n.id === `net${i}`)) return `net${i}`;
}

/** Does this NIC's guest memory have to be shared with another process (vhost-user)? */
export function needsSharedMemory(nics: readonly InstanceNic[]): boolean {
  return nics.some((n) => n.model === 'vhost-user-net');
}

/**
 * Check a NIC request against the instance's NICs and the host, and return the new NIC. `uuid` seeds its MAC;
 * `taken` are the MACs of every NIC on the host.
 */
export function planNic(uuid: string, nics: readonly InstanceNic[], req: NicRequest, host: NicHost, taken: Pick<ReadonlySet<string>, 'has'>): InstanceNic {
  if (req === null || typeof req !== 'object') throw new CorralError('INVALID_SPEC', 'a NIC request must be an object', { field: '' });
  if (nics.length >= MAX_NICS) throw invalidSpec('nics', `an instance has at most ${MAX_NICS} NICs`);
  const model = parseModel(req.model);
  const id = nextNicId(nics);
  const queues = req.queues ?? 1;
  if (!Number.isInteger(queues) || queues < 1 || queues > MAX_QUEUES) throw invalidSpec('queues', `must be a whole number 1..${MAX_QUEUES}`);
  if (queues > 1 && !['virtio-net', 'vhost-net', 'vhost-user-net'].includes(model)) throw invalidSpec('queues', `${model} has one queue; multi-queue needs virtio-net, vhost-net or vhost-user-net`);
  let mac: string;
  if (req.mac !== undefined) {
    mac = String(req.mac).toLowerCase();
    if (!MAC_RE.test(mac)) throw invalidSpec('mac', `"${printable(String(req.mac))}" is not a MAC address such as 52:54:00:12:34:56`);
    if (parseInt(mac.slice(0, 2), 16) & 1) throw invalidSpec('mac', `${mac} is a multicast address`);
    if (taken.has(mac)) throw new CorralError('ALREADY_EXISTS', `MAC ${mac} is already used by another NIC on this host`, { field: 'mac' });
  } else {
    mac = macFor(uuid, Number(id.slice(3)), taken);
  }
  const nic: InstanceNic = { id, model, network: null, mac, queues };

  if (req.backend !== undefined && model !== 'vhost-user-net') throw invalidSpec('backend', 'only vhost-user-net takes a vhost-user back end');
  if (model === 'vhost-user-net') {
    if (req.network !== undefined) throw invalidSpec('network', 'a vhost-user-net NIC is on its back end\'s socket, not on a Corral network');
    if (req.backend === undefined) throw invalidSpec('backend', 'vhost-user-net needs --backend NAME: a vhost-user back end an admin registered (corral vhost-user list)');
    const b = host.vhostUserBackend(validateName('backend', req.backend));
    if (!host.isSocket(b.socket)) {
      throw new CorralError('DEVICE_UNAVAILABLE', `backend: no vhost-user back end listens on ${b.socket}, the socket of "${b.name}" (start the DPDK/OVS back end first)`, { field: 'backend' });
    }
    nic.backend = b.name;
    nic.socket = b.socket;
  } else if (model === 'sriov') {
    if (req.network !== undefined) throw invalidSpec('network', 'an SR-IOV VF is on the physical function\'s network, not on a Corral network');
    if (typeof req.pf !== 'string' || req.pf === '') throw invalidSpec('pf', 'model sriov needs --sriov PF (the physical function\'s PCI address)');
    const vlan = req.vlan ?? null;
    if (vlan !== null && (!Number.isInteger(vlan) || vlan < 1 || vlan > 4094)) throw invalidSpec('vlan', 'a VLAN id is 1..4094');
    nic.sriov = { pf: req.pf, vlan };
  } else {
    if (req.pf !== undefined || req.vlan !== undefined) throw invalidSpec('pf', 'only model sriov takes a physical function and VLAN');
    const network = validateName('network', req.network ?? DEFAULT_NETWORK);
    const kind = host.networkKind(network);
    if (model === 'vhost-net') {
      if (kind !== 'bridge') throw invalidSpec('model', `vhost-net needs a tap device: put it on a bridge network ("${network}" is user-mode NAT, which has none)`);
      if (!host.vhostNet) {
        throw new CorralError('DEVICE_UNAVAILABLE', 'model: vhost-net needs /dev/vhost-net, which this host does not have (modprobe vhost_net); use virtio-net', { field: 'model' });
      }
    }
    if (queues > 1 && kind === 'user') throw invalidSpec('queues', 'user-mode networking has one queue; multi-queue needs a bridge network');
    nic.network = network;
    if (req.forwards !== undefined) {
      if (kind !== 'user') throw invalidSpec('forwards', `port forwards are for user-mode networks; "${network}" is a bridge: reach the guest at its address`);
      if (!Array.isArray(req.forwards)) throw invalidSpec('forwards', 'must be a list');
      nic.forwards = req.forwards.map(parseForward);
    }
    if (kind === 'bridge') nic.address = host.reserveAddress(network); // last: nothing is reserved for a refused NIC
  }
  return nic;
}

/** A forward listening on every host address: 0.0.0.0, or empty in records made before the 127.0.0.1 default. */
function everyAddress(addr: string): boolean {
  return addr === '' || addr === '0.0.0.0';
}

/** Host ports forwarded by `nic` that clash with `others` (same proto and port, overlapping addresses). */
export function forwardClashes(nic: InstanceNic, others: ReadonlyArray<{ instance: string; nic: InstanceNic }>): string | null {
  for (const f of nic.forwards ?? []) {
    for (const o of others) {
      for (const g of o.nic.forwards ?? []) {
        if (f.proto === g.proto && f.hostPort === g.hostPort && (everyAddress(f.hostAddr) || everyAddress(g.hostAddr) || f.hostAddr === g.hostAddr)) {
          return `${f.proto} port ${f.hostPort} is already forwarded to instance "${o.instance}"`;
        }
      }
    }
  }
  return null;
}
