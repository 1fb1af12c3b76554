/**
 * Replies are serialised from their schemas, which drop any property a schema does not name. Each view a service
 * returns, with every optional field filled in, must come out of the API exactly as the service gave it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildApi } from '../../../src/api/server.js';
import type { Services } from '../../../src/api/services.js';
import type { InstanceView } from '../../../src/services/instances.js';
import type { CpuStats } from '../../../src/services/cpu.js';
import type { MemoryStats } from '../../../src/services/memory.js';
import type { DiskView } from '../../../src/services/disks.js';
import type { NicView } from '../../../src/services/nics.js';
import type { HostdevView } from '../../../src/services/passthrough.js';
import type { NetworkDetails } from '../../../src/services/networks.js';
import type { HostFacts } from '../../../src/services/host.js';
import type { DevicePath } from '../../../src/services/device-paths.js';
import type { PoolView } from '../../../src/core/pool.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import type { Volume, VolumeDetails, SnapshotInfo } from '../../../src/storage/volumes.js';
import type { PciDevice } from '../../../src/host/pci.js';
import type { SriovState } from '../../../src/host/sriov.js';
import type { VhostUserView } from '../../../src/services/vhost-user.js';
import type { ExecResult, GuestInfo } from '../../../src/core/guest-agent.js';
import type { SnapshotView } from '../../../src/core/snapshots.js';

const GiB = 1024 ** 3;

const instance: InstanceView = {
  name: 'web1', uuid: '6f1c0e4e-0000-4000-8000-000000000001', state: 'running', image: 'tiny', cpus: 2, memory: GiB, firmware: 'bios',
  network: 'default', mac: '52:54:00:00:00:01', accel: 'tcg', pid: 4431, disk: { path: '/var/lib/corral/instances/x/disk.qcow2', allocated: 196608 },
  uptime: 12.5, rss: 123456789, createdAt: '2026-11-30T13:00:00.000Z', startedAt: '2026-11-30T13:00:01.000Z', lastError: 'earlier failure',
  lastExit: { at: '2026-11-30T12:00:00.000Z', pid: 4000, state: 'crashed', reason: 'QEMU 4000 was killed by SIGSEGV', code: null, signal: 'SIGSEGV', kernel: 'segfault at 18', service: null, stderr: 'qemu: oops' },
  spec: {
    image: 'tiny', cpus: 2, memory: GiB, disk: 2 * GiB, firmware: 'bios', accel: 'auto', topology: { sockets: 1, cores: 4, threads: 1 }, maxCpus: 4,
    cpuModel: 'max', pin: [0, 1], cpuWeight: 200, cpuLimit: 1.5, maxMemory: 2 * GiB, memoryLimit: 3 * GiB, prealloc: false, hugepages: '2M', balloon: true,
    disks: [{ volume: 'data', bus: 'virtio-scsi' }], rootBus: 'sata',
    nics: [
      { id: 'net0', model: 'virtio-net', network: 'default', mac: '52:54:00:00:00:01', queues: 1, forwards: [{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 2222, guestPort: 22 }] },
      { id: 'net1', model: 'vhost-user-net', network: null, mac: '52:54:00:00:00:02', queues: 2, backend: 'ovs0', socket: '/run/vhost.sock' },
      { id: 'net3', model: 'e1000', network: 'lan', mac: '52:54:00:00:00:04', queues: 1, address: '10.10.0.10' },
      { id: 'net2', model: 'sriov', network: null, mac: '52:54:00:00:00:03', queues: 1, sriov: { pf: '0000:03:00.0', vlan: 100 } },
    ],
    hostdevs: [{ id: 'hostdev0', address: '0000:05:00.0' }], rootPool: 'shared', ha: true, agent: true,
  },
  updatedAt: '2026-11-30T13:00:01.500Z',
};

const cpu: CpuStats = {
  name: 'web1', accel: 'kvm', pid: 4431, cpus: 2, maxCpus: 4, topology: { sockets: 1, cores: 4, threads: 1 }, pin: '0-1',
  vcpus: [{ index: 0, threadId: 4432, qomPath: '/machine/unattached/device[0]', cpuTime: 1.25, lastCpu: 1, allowed: '0' }],
  cgroup: { version: 'v2', name: 'corral/x', dirs: { cpu: '/sys/fs/cgroup/corral/x', cpuacct: '/a', memory: '/m' }, cpuWeight: 200, cpuLimit: 1.5, memoryLimit: 3 * GiB, cpuUsage: 2.5, memoryUsage: 4096, pids: [4431] },
  exits: { available: true, vcpus: [{ index: 0, qomPath: '/machine/unattached/device[0]', counters: { exits: 10, halt_exits: 2 } }], total: { exits: 10, halt_exits: 2 } },
};

const memory: MemoryStats = {
  name: 'web1', configured: { memory: GiB, maxMemory: 2 * GiB, balloon: true }, requested: GiB,
  guest: { visible: GiB, balloon: GiB, plugged: 0, total: 1000000, free: 500000, available: 600000, used: 400000 },
  host: { rss: 1000, anonymous: 800, shared: 200, swap: 0 },
  map: [{ region: 'pc.ram', gpaStart: 0, gpaEnd: 0x3fffffff, hvaStart: 0x7f0000000000, hvaEnd: 0x7f003fffffff, size: GiB, resident: 4096, swapped: 0 }],
};

const disks: DiskView[] = [{ volume: 'data', bus: 'virtio-scsi', id: 'vol-data', path: '/var/lib/corral/volumes/data.qcow2', format: 'qcow2', serial: 'data' }];
const nics: NicView[] = instance.spec.nics.map((n, i) => ({ ...n, tap: i === 0 ? null : `tap${i}`, ip: i === 0 ? null : `10.0.0.${i}` }));
const hostdevs: HostdevView[] = [
  { id: 'hostdev0', kind: 'passthrough', address: '0000:05:00.0', pf: null, vlan: null, className: 'VGA controller', driver: 'vfio-pci', iommuGroup: 12, bound: true },
  { id: 'net2', kind: 'sriov-vf', address: null, pf: '0000:03:00.0', vlan: 100, className: null, driver: null, iommuGroup: null, bound: false },
];
const network: NetworkDetails = {
  name: 'lan', kind: 'bridge', cidr: '10.10.0.0/24', gateway: '10.10.0.1', dhcp: { start: '10.10.0.2', end: '10.10.0.254' }, nat: true, dns: true,
  bridge: 'crl-lan', builtin: false, createdAt: '2026-11-30T13:00:00.000Z',
  status: { bridge: { name: 'crl-lan', exists: true, up: true, addresses: ['10.10.0.1/24'], ports: ['tap1'] }, dnsmasq: { pid: 99, running: true } },
  leases: [{ mac: '52:54:00:00:00:02', ip: '10.10.0.5', hostname: 'web1', expires: null }],
};
const { status: _status, leases: _leases, ...networkRecord } = network;
const image: ImageRecord = {
  name: 'tiny', kind: 'kernel', format: 'qcow2', disk: '/i/disk.qcow2', kernel: '/i/vmlinuz', initrd: '/i/initrd', cmdline: 'console=ttyS0',
  virtualSize: GiB, createdAt: '2026-11-30T13:00:00.000Z', source: 'tiny',
};
const snapshot: SnapshotInfo = { name: 's1', id: '1', createdAt: null, vmStateSize: 0 };
const volume: Volume = { name: 'data', pool: 'default', format: 'qcow2', virtualSize: GiB, path: '/v/data.qcow2', createdAt: '2026-11-30T13:00:00.000Z', backing: 'base', attachedTo: 'web1', allocated: 4096 };
const volumeDetails: VolumeDetails = { ...volume, snapshots: [snapshot], clones: ['data2'] };
const devices: DevicePath[] = [{ kind: 'disk', id: 'root', approach: 'emulated', qemuDevice: 'ide-hd', dataPath: 'guest ide -> QEMU' }];
const pool: PoolView = { capacity: { cpus: 16, memory: 8 * GiB }, allocated: { cpus: 2, memory: GiB, instances: 1 }, free: { cpus: 14, memory: 7 * GiB }, ratios: { cpu: 4, memory: 1.5 }, reservedMemory: 512 * 1024 * 1024 };
const host: HostFacts = {
  hostname: 'h1', accelerator: 'kvm', acceleratorReason: 'a guest booted under KVM', acceleratorForced: false,
  qemu: { binary: 'qemu-system-x86_64', version: '7.2.0', machines: 30, devices: 400 }, cpus: 4, cpuModel: 'Xeon', memory: { total: 8 * GiB, available: 4 * GiB },
  inventory: {
    cpu: { vendor: 'GenuineIntel', model: 'Xeon', flags: ['vmx'], virtualization: 'vmx', hypervisor: true, topology: { cpus: [{ cpu: 0, socket: 0, core: 0, siblings: [0, 1] }], sockets: 1, coresPerSocket: 2, threadsPerCore: 2 } },
    numa: [{ id: 0, cpus: [0, 1], memTotal: 8 * GiB, memFree: GiB, hugepages: [{ size: 2097152, total: 4, free: 2 }] }],
    memory: { total: 8 * GiB, available: 4 * GiB, hugepages: [{ size: 2097152, total: 4, free: 2 }], transparentHugepages: 'madvise', ksm: { available: true, run: 1, pagesShared: 1, pagesSharing: 2, pagesUnshared: 3 } },
    cgroups: { version: 'v2', root: '/sys/fs/cgroup', controllers: ['cpu', 'memory'], v1: { cpu: '/sys/fs/cgroup/cpu' }, unified: { path: '/sys/fs/cgroup', controllers: ['cpu'] }, mountsVersion: 'v2', confirmedByMounts: true },
  },
};
const pci: PciDevice[] = [
  { address: '0000:03:00.0', vendor: '8086', device: '10fb', class: '020000', classCode: '0200', className: 'Ethernet controller', driver: 'ixgbe', iommuGroup: 30, iommuGroupPeers: ['0000:03:00.1'], numaNode: 0, sriov: { totalVfs: 8, numVfs: 2, vfs: ['0000:03:10.0'] } },
  { address: '0000:03:10.0', vendor: null, device: null, class: null, classCode: null, className: 'Ethernet controller', driver: null, iommuGroup: null, iommuGroupPeers: [], numaNode: null, sriov: { physfn: '0000:03:00.0' } },
];
const sriov: SriovState = { pf: '0000:03:00.0', netdev: 'enp3s0f0', totalVfs: 8, numVfs: 1, vfs: [{ index: 0, address: '0000:03:10.0', driver: 'vfio-pci', free: false }] };

const backend: VhostUserView = { name: 'ovs0', socket: '/run/vhost.sock', createdAt: '2026-11-30T13:00:00.000Z', listening: true, usedBy: ['web1/net1'] };

const guest: GuestInfo = {
  os: { id: 'debian', name: 'Debian GNU/Linux', prettyName: 'Debian GNU/Linux 12 (bookworm)', version: '12 (bookworm)', versionId: '12', kernelRelease: '6.1.0-57-amd64', machine: 'x86_64' },
  interfaces: [{ name: 'lo', addresses: [{ family: 'ipv4', address: '127.0.0.1', prefix: 8 }] }, { name: 'eth0', mac: '52:54:00:00:00:01', addresses: [{ family: 'ipv4', address: '10.0.2.15', prefix: 24 }, { family: 'ipv6', address: 'fec0::5054:ff:fe00:1', prefix: 64 }] }],
};
const exec: ExecResult = { exitCode: 3, signal: null, stdout: Buffer.from('out\n'), stderr: Buffer.from('err\n'), stdoutTruncated: false, stderrTruncated: true };

const instanceSnapshot: SnapshotView = { name: 'before', createdAt: '2026-12-01T10:00:00.000Z', memory: true, frozen: false, instanceState: 'running', vmStateSize: 123456, disks: ['root', 'data'] };

const later = <T>(v: T) => async (): Promise<T> => v;
const svc = {
  instances: {
    list: () => [instance], get: () => instance, create: later(instance), start: later(instance), stop: later(instance), restart: later(instance),
    pause: later(instance), resume: later(instance), kill: later(instance), devices: later(devices), pool: () => pool, startTimings: new Map(),
    rowOf: () => ({}), view: () => instance,
  },
  guestAgent: { info: later(guest), exec: later(exec) },
  config: { set: later({ instance, changed: ['cpus', 'memory'] }) },
  images: { list: () => [image], get: () => image },
  host: { show: later(host) },
  events: { subscribe: () => () => undefined, since: () => [] },
  cpu: { stats: later(cpu), resizeCpus: later({ name: 'web1', cpus: 3, state: 'stopped' }) },
  memory: { stats: later(memory), resizeMemory: later(memory) },
  volumes: { list: () => [volume], get: later(volumeDetails), create: later(volume), clone: later(volume), snapshots: later([snapshot]), snapshot: later(snapshot) },
  snapshots: { list: () => [instanceSnapshot], create: later(instanceSnapshot), restore: later({ snapshot: instanceSnapshot, state: 'running' }), delete: later(undefined) },
  disks: { list: () => disks, attach: later(disks), detach: later(disks), resizeVolume: later(volume) },
  nics: { list: () => nics, attach: later(nics), detach: later(nics) },
  networks: { list: () => [networkRecord], get: later(network), create: later(networkRecord) },
  vhostUser: { list: () => [backend], get: () => backend, view: (b: unknown) => b, add: later(backend) },
  passthrough: { list: () => hostdevs, attach: later(hostdevs), detach: later(hostdevs), pciDevices: () => pci, sriov: () => sriov, setVfCount: later(sriov) },
} as unknown as Services;

test('every view comes out of the API as the service gave it, optional fields and all', async () => {
  const app = await buildApi(svc);
  const cases: Array<[string, string, unknown, unknown?]> = [
    ['GET', '/v1/instances', { instances: [instance] }],
    ['GET', '/v1/instances/web1', { ...instance, guest }],
    ['POST', '/v1/instances', instance, { name: 'web1', image: 'tiny' }],
    ['PATCH', '/v1/instances/web1', { instance, changed: ['cpus', 'memory'] }, { cpus: 2 }],
    ['POST', '/v1/instances/web1/start', instance, {}],
    ['POST', '/v1/instances/web1/stop', { ...instance, killed: false, stoppedBy: null }, {}],
    ['POST', '/v1/instances/web1/exec', { exitCode: 3, signal: null, stdout: 'out\n', stderr: 'err\n', encoding: 'utf8', stdoutTruncated: false, stderrTruncated: true }, { command: ['sh', '-c', 'x'] }],
    ['POST', '/v1/instances/web1/exec', { exitCode: 3, signal: null, stdout: 'b3V0Cg==', stderr: 'ZXJyCg==', encoding: 'base64', stdoutTruncated: false, stderrTruncated: true }, { command: ['sh'], encoding: 'base64', stdin: 'eA==' }],
    ['GET', '/v1/instances/web1/devices', { devices }],
    ['GET', '/v1/instances/web1/cpu', cpu],
    ['POST', '/v1/instances/web1/cpus', { name: 'web1', cpus: 3, state: 'stopped' }, { count: 3 }],
    ['GET', '/v1/instances/web1/memory', memory],
    ['POST', '/v1/instances/web1/memory', memory, { size: '1G' }],
    ['GET', '/v1/instances/web1/disks', { disks }],
    ['POST', '/v1/instances/web1/disks', { disks }, { volume: 'data' }],
    ['GET', '/v1/instances/web1/snapshots', { snapshots: [instanceSnapshot] }],
    ['POST', '/v1/instances/web1/snapshots', instanceSnapshot, { name: 'before', memory: true }],
    ['POST', '/v1/instances/web1/snapshots/before/restore', { snapshot: instanceSnapshot, state: 'running' }, { force: true }],
    ['DELETE', '/v1/instances/web1/snapshots/before', { deleted: 'before', instance: 'web1' }],
    ['GET', '/v1/instances/web1/nics', { nics }],
    ['GET', '/v1/instances/web1/hostdevs', { hostdevs }],
    ['GET', '/v1/networks', { networks: [networkRecord] }],
    ['POST', '/v1/networks', networkRecord, { name: 'lan' }],
    ['GET', '/v1/networks/lan', network],
    ['GET', '/v1/vhost-user', { backends: [backend] }],
    ['GET', '/v1/vhost-user/ovs0', backend],
    ['POST', '/v1/vhost-user', backend, { name: 'ovs0', socket: '/run/vhost.sock' }],
    ['GET', '/v1/images', { images: [image] }],
    ['GET', '/v1/images/tiny', image],
    ['GET', '/v1/volumes', { volumes: [volume] }],
    ['GET', '/v1/volumes/data', volumeDetails],
    ['POST', '/v1/volumes/data/resize', volume, { size: '2G' }],
    ['GET', '/v1/volumes/data/snapshots', { snapshots: [snapshot] }],
    ['GET', '/v1/pool', pool],
    ['GET', '/v1/host', host],
    ['GET', '/v1/host/devices', { devices: pci }],
    ['GET', '/v1/host/sriov/03:00.0', sriov],
    ['POST', '/v1/host/sriov', sriov, { pf: '03:00.0', vfs: 1 }],
  ];
  try {
    for (const [method, url, want, payload] of cases) {
      const r = await app.inject({ method: method as 'GET', url, ...(payload === undefined ? {} : { payload: payload as object }) });
      assert.ok(r.statusCode === 200 || r.statusCode === 201, `${method} ${url}: ${r.statusCode} ${r.body.slice(0, 300)}`);
      assert.deepEqual(r.json(), JSON.parse(JSON.stringify(want)), `${method} ${url}`);
    }
  } finally {
    await app.close();
  }
});

test('a reply that does not match its schema is not sent half-empty: a missing required field is an error', async () => {
  const broken = { ...svc, cpu: { stats: later({ ...cpu, pid: undefined }) } } as unknown as Services;
  const app = await buildApi(broken);
  try {
    const r = await app.inject({ method: 'GET', url: '/v1/instances/web1/cpu' });
    assert.equal(r.statusCode, 500);
  } finally {
    await app.close();
  }
});
