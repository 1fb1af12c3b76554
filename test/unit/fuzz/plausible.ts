/**
 * Strings that the services take for what they are, by field name (names that exist, sizes, addresses, files),
 * mixed with the fuzzy ones: so that bodies the schema accepts also get past the services' own checks, and
 * reach the paths that make things, where a refusal half-way would leave something behind.
 */
import fc from 'fast-check';
import { anyInteger, anyString, type Hints } from './arbitraries.js';

const NAMES = ['web1', 'web2', 'vol1', 'tiny', 'default', 'user', 'net1', 'tok1', 'n-2'];
const SIZES = ['64M', '128M', '256M', '512M', '1G', '2G', '16G', '0', '1P'];
const PCI = ['0000:03:00.0', '03:00.0', '0000:03:10.0', '03:10.2', '0000:04:00.0', '0000:09:00.0'];

const BY_FIELD: Record<string, string[]> = {
  name: NAMES, volume: NAMES, image: ['tiny', 'web1'], backend: NAMES, network: ['default', 'user', 'net1', 'none'],
  memory: SIZES, maxMemory: SIZES, memoryLimit: SIZES, size: SIZES, disk: SIZES,
  cpuModel: ['auto', 'host', 'max', 'qemu64', 'Skylake-Client'], forwards: ['tcp::2222:22', 'tcp:127.0.0.1:8080:80', 'udp::5353:53'],
  pf: PCI, address: PCI, mac: ['52:54:00:12:34:56', '52:54:00:00:00:01', 'ff:ff:ff:ff:ff:ff'],
  cidr: ['10.77.0.0/24', '10.78.0.0/16', '192.168.1.0/24', '10.77.0.1/24'], role: ['viewer', 'operator', 'admin'],
  model: ['virtio-net', 'e1000', 'rtl8139', 'vhost-net', 'vhost-user-net', 'sriov'], nicModel: ['virtio-net', 'e1000', 'vhost-net'],
  bus: ['virtio-blk', 'virtio-scsi', 'ide', 'sata', 'vhost-user-blk'], rootBus: ['virtio-blk', 'virtio-scsi', 'ide', 'sata'],
  expires: ['30d', '12h', '2030-01-01T00:00:00Z', '2001-01-01T00:00:00Z'],
};

/** Counts within what the fake host (8 CPUs, 16 GiB, 2 VFs a PF) can give. */
const INTEGERS: Record<string, number[]> = {
  cpus: [1, 2, 4, 8], maxCpus: [2, 4, 8], sockets: [1, 2], cores: [1, 2], threads: [1, 2], vfs: [0, 1, 2], vlan: [0, 10, 4094],
  cpuWeight: [1, 100, 10000], queues: [1, 2], timeout: [0, 1, 5], count: [1, 2, 4, 8], pin: [0, 1, 3, 7],
  memory: [268435456, 536870912], size: [67108864, 268435456], cpuLimit: [1, 2],
};

function mixed<T>(known: T[] | undefined, any: fc.Arbitrary<T>): fc.Arbitrary<T> {
  return known ? fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...known) }, { weight: 1, arbitrary: any }) : any;
}

/** `files`: paths that exist (an image to import, a listening socket) for the fields that name a file. */
export function plausible(files: string[]): Hints {
  return {
    string: (field) => mixed(field === 'file' || field === 'socket' ? files : BY_FIELD[field], anyString),
    integer: (field) => mixed(INTEGERS[field], anyInteger),
  };
}
