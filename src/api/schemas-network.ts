/** Schemas of networks (with their bridge, dnsmasq and DHCP leases) and of an instance's NICs. */
import { Type, type Static } from '@sinclair/typebox';
import { InstanceNicSchema } from '../core/spec-schema.js';
import { nullable } from './schemas-common.js';

export const CreateNetworkBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    kind: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('bridge')], { description: 'default bridge' })),
    cidr: Type.Optional(Type.String({ description: 'bridge networks: IPv4 subnet, /8 to /29, e.g. 10.10.0.0/24' })),
    nat: Type.Optional(Type.Boolean({ description: 'bridge networks: masquerade out of the host (default true); false makes an isolated network' })),
  },
  { additionalProperties: false },
);

const networkFields = {
  name: Type.String(),
  kind: Type.Union([Type.Literal('user'), Type.Literal('bridge')]),
  cidr: nullable(Type.String(), 'bridge networks: the IPv4 subnet, e.g. 10.10.0.0/24'),
  gateway: nullable(Type.String(), 'the host\'s address on the bridge; the guests\' router when nat is on'),
  dhcp: nullable(Type.Object({ start: Type.String(), end: Type.String() }), 'the addresses dnsmasq hands out, first and last'),
  nat: Type.Boolean({ description: 'masquerade the subnet out of the host; user networks always NAT (inside QEMU)' }),
  dns: Type.Boolean({ description: 'dnsmasq answers DNS on the gateway: on exactly when nat is' }),
  bridge: nullable(Type.String(), 'the Linux bridge\'s name; null for user networks'),
  builtin: Type.Boolean({ description: 'true for the built-in default network' }),
  createdAt: nullable(Type.String()),
};

export const Network = Type.Object(networkFields, { title: 'Network' });
export type Network = Static<typeof Network>;
export const NetworkList = Type.Object({ networks: Type.Array(Network) });

export const Lease = Type.Object(
  {
    mac: Type.String(),
    ip: Type.String(),
    hostname: nullable(Type.String(), 'the name the guest sent'),
    expires: nullable(Type.String(), 'when the lease runs out (ISO time); null for an infinite lease'),
  },
  { title: 'Lease' },
);
export type Lease = Static<typeof Lease>;

export const BridgeState = Type.Object({
  name: Type.String(),
  exists: Type.Boolean(),
  up: Type.Boolean(),
  addresses: Type.Array(Type.String(), { description: 'IPv4 addresses on it, ADDRESS/PREFIX' }),
  ports: Type.Array(Type.String(), { description: 'its ports (taps of VMs)' }),
});

/** GET /v1/networks/{name}: the record, the host side as it is now, and the DHCP leases. */
export const NetworkDetails = Type.Object(
  {
    ...networkFields,
    status: nullable(
      Type.Object({ bridge: BridgeState, dnsmasq: Type.Object({ pid: nullable(Type.Integer()), running: Type.Boolean() }) }),
      'null for user networks (nothing on the host)',
    ),
    leases: Type.Array(Lease),
  },
  { title: 'NetworkDetails' },
);
export type NetworkDetails = Static<typeof NetworkDetails>;

// ---- NICs of an instance ----

export const AttachNicBody = Type.Object(
  {
    network: Type.Optional(Type.String({ description: 'network name (default: the user-mode network "default"); not for vhost-user-net or sriov' })),
    model: Type.Optional(Type.String({ description: 'virtio-net (default), e1000, rtl8139, vhost-net, vhost-user-net or sriov' })),
    queues: Type.Optional(Type.Integer({ description: 'queue pairs (virtio models on a bridge network or vhost-user)' })),
    backend: Type.Optional(Type.String({ description: 'vhost-user-net: the name of a registered vhost-user back end (GET /v1/vhost-user)' })),
    pf: Type.Optional(Type.String({ description: 'sriov: the physical function (PCI address) to take a VF of' })),
    vlan: Type.Optional(Type.Integer({ description: 'sriov: VLAN id set on the VF' })),
    mac: Type.Optional(Type.String({ description: 'MAC address (default: a stable one derived from the instance)' })),
    forwards: Type.Optional(Type.Array(Type.String(), { description: 'user network: [tcp|udp:][ADDR:]HOSTPORT:GUESTPORT' })),
  },
  { additionalProperties: false },
);
export const NicParams = Type.Object({ name: Type.String(), nic: Type.String({ description: 'NIC id (net0, net1, ...) or MAC' }) }, { additionalProperties: false });

/** A NIC as the instance spec stores it, with its host tap and the guest's address. */
export const Nic = Type.Composite(
  [
    InstanceNicSchema,
    Type.Object({
      tap: nullable(Type.String(), 'the host tap device (bridge networks)'),
      ip: nullable(Type.String(), 'the guest\'s address from the network\'s DHCP leases, when known (on a bridge network, its fixed address once it has asked)'),
    }),
  ],
  { title: 'Nic' },
);
export type Nic = Static<typeof Nic>;
export const NicList = Type.Object({ nics: Type.Array(Nic) });

/** A NIC's counters, as the guest sees them (rx: what the guest received), with where they come from. */
export const NicStat = Type.Object(
  {
    nic: Type.String({ description: 'NIC id' }),
    model: Type.String(),
    network: nullable(Type.String()),
    mac: Type.String(),
    source: nullable(Type.Union([Type.Literal('tap'), Type.Literal('guest-agent')]), 'tap: counted by the host\'s tap device; guest-agent: reported by the guest (user-mode networking, which QEMU keeps no counter of); null: no figures (no tap, and the guest agent did not answer)'),
    rxBytes: nullable(Type.Integer()),
    rxPackets: nullable(Type.Integer()),
    txBytes: nullable(Type.Integer()),
    txPackets: nullable(Type.Integer()),
  },
  { title: 'NicStat' },
);
export const NicStats = Type.Object({ name: Type.String(), nics: Type.Array(NicStat) }, { title: 'NicStats' });
export type NicStats = Static<typeof NicStats>;

// ---- vhost-user back ends (registered by an admin; vhost-user-net NICs name one) ----

export const CreateVhostUserBody = Type.Object(
  {
    name: Type.String({ description: 'DNS label: a-z, 0-9 and -, 1..63 characters' }),
    socket: Type.String({ description: 'absolute path of the back end\'s unix socket (it need not exist yet), outside Corral\'s data dir' }),
  },
  { additionalProperties: false },
);

export const VhostUserBackend = Type.Object(
  {
    name: Type.String(),
    socket: Type.String({ description: 'the back end\'s unix socket; QEMU connects to it' }),
    createdAt: nullable(Type.String()),
    listening: Type.Boolean({ description: 'a unix socket is there now' }),
    usedBy: Type.Array(Type.String(), { description: 'the NICs on it, INSTANCE/NIC' }),
  },
  { title: 'VhostUserBackend' },
);
export type VhostUserBackend = Static<typeof VhostUserBackend>;
export const VhostUserList = Type.Object({ backends: Type.Array(VhostUserBackend) });
