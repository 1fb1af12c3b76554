/**
 * The daemon's service graph as main.ts wires it, over a data dir and a real SQLite store, with the host kept out:
 * - the hypervisor is the fake one (src/vm/fake-driver.ts): no QEMU runs, a VM is an object in the driver;
 * - the network service runs over an in-memory host (src/network/fake-host.ts): no bridge, nft table, tap or dnsmasq;
 * - PCI passthrough sees an empty sysfs and /dev (no devices) and may write nothing, unless given others;
 * - cgroups are a plain folder laid out as a cgroup v2 root;
 * - the host's size is given (CPUs and memory), not read;
 * - files are handed to the given user (default: the one running it) instead of corral-qemu;
 * - a root disk is an empty file instead of a qcow2 overlay made by qemu-img, unless `overlay` says otherwise.
 * A simulated agent (simulate.ts) runs one such graph per simulated host; the fuzzing of the real services
 * (test/unit/fuzz/service-graph.ts) runs one with real overlays and a fake PCI host.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Services } from '../api/services.js';
import { dataPaths } from '../core/paths.js';
import { DEFAULT_POOL_CONFIG } from '../core/pool.js';
import { CorralError } from '../core/errors.js';
import type { RunAs } from '../host/run-as.js';
import type { Exec } from '../host/sriov.js';
import type { FsOps } from '../host/vfio.js';
import { consoleLogHooks } from '../services/console-log.js';
import { CpuService } from '../services/cpu.js';
import { DiskService } from '../services/disks.js';
import { EventBus } from '../services/events.js';
import { HostService } from '../services/host.js';
import { ImageService } from '../services/images.js';
import { InstanceConfigService } from '../services/instance-config.js';
import type { InstanceDeps } from '../services/instance-deps.js';
import { InstanceService } from '../services/instances.js';
import { MemoryService } from '../services/memory.js';
import { NetworkService } from '../services/networks.js';
import { NicService, networkDirectory } from '../services/nics.js';
import { PassthroughService } from '../services/passthrough.js';
import { StorageDaemonService } from '../services/storage-daemons.js';
import { TokenService } from '../services/tokens.js';
import { MigrationService } from '../services/migration.js';
import { MetricsService } from '../services/metrics.js';
import { HistoryService } from '../services/history.js';
import { MigrationRecoveryService } from '../services/migration-recovery.js';
import { VhostUserService } from '../services/vhost-user.js';
import { vmFileHooks } from '../services/vm-files.js';
import { cloudInitHooks } from '../services/cloud-init.js';
import { VolumeService } from '../services/volumes.js';
import { FakeNetworkHost } from '../network/fake-host.js';
import { NetworkStore } from '../network/store.js';
import { VhostUserStore } from '../network/vhost-user-store.js';
import { ImageStore, type ImageRecord } from '../storage/images.js';
import { VolumeStore } from '../storage/volumes.js';
import { SqliteStore } from '../store/sqlite.js';
import { FakeDriver } from '../vm/fake-driver.js';
import { GuestAgentService } from '../services/guest-agent.js';
import { SnapshotService } from '../services/snapshots.js';

type Log = { info(o: object, m?: string): void; warn(o: object, m?: string): void; error(o: object, m?: string): void; debug(o: object, m?: string): void };
const quiet: Log = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

export interface SimGraphOptions {
  dataDir: string;
  /** the host's size: CPUs (numbered 0..cpus-1) and memory in bytes; the pool takes all of it (no reserve) */
  cpus: number;
  memory: number;
  /** who files are handed to (default: the user running this) */
  runAs?: RunAs;
  /** a folder laid out as a cgroup v2 root (default: made at DATA_DIR/cgroup) */
  cgroupRoot?: string;
  /** what PCI passthrough sees (default: an empty sysfs and /dev under DATA_DIR/pci, writes refused) */
  pci?: { sys: string; dev: string; ops: FsOps; exec?: Exec };
  net?: FakeNetworkHost;
  /** how a root disk is made (default: an empty file) */
  overlay?: InstanceDeps['overlay'];
  /** how long an unplug waits for the guest (default: the services' own) */
  unplugTimeoutMs?: number;
  log?: Log;
}

export interface SimGraph {
  services: Services;
  store: SqliteStore;
  driver: FakeDriver;
  net: FakeNetworkHost;
  cgroupRoot: string;
  /** stop watching the VMs and close the store (the VMs, objects in the driver, are left as they are) */
  stop(): void;
}

/** No PCI device on a simulated host: nothing reaches sysfs. */
const refuseWrites: FsOps = {
  write: (path) => {
    throw new CorralError('INVALID_STATE', `a simulated host writes no sysfs file (${path})`);
  },
  readlink: () => null,
  exists: () => false,
};
const refuseExec: Exec = async (argv) => {
  throw new CorralError('INVALID_STATE', `a simulated host runs no ${argv[0] ?? 'command'}`);
};

/** An empty file for a root disk: a simulated VM never reads it. */
export const emptyOverlay: NonNullable<InstanceDeps['overlay']> = async (path) => {
  writeFileSync(path, '');
};

/** A kernel-boot image `name` whose files are empty (enough for the fake hypervisor); costs three small files. */
export function plantEmptyImage(dataDir: string, name = 'tiny'): void {
  const dir = join(dataPaths(dataDir).images, name);
  mkdirSync(dir, { recursive: true });
  for (const f of ['root.qcow2', 'vmlinuz', 'initrd']) writeFileSync(join(dir, f), '');
  const rec: ImageRecord = {
    name, kind: 'kernel', format: 'qcow2', disk: join(dir, 'root.qcow2'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd'),
    cmdline: 'console=ttyS0', virtualSize: 64 * 1024 * 1024, createdAt: '2026-01-01T00:00:00.000Z', source: 'tiny',
  };
  writeFileSync(join(dir, 'image.json'), JSON.stringify(rec));
}

function currentUser(): RunAs {
  return { user: userInfo().username, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [] };
}

export async function simServiceGraph(o: SimGraphOptions): Promise<SimGraph> {
  const { dataDir } = o;
  const log = o.log ?? quiet;
  const runAs = o.runAs ?? currentUser();
  const paths = dataPaths(dataDir);
  for (const d of [paths.instances, paths.run, paths.volumes, paths.images, paths.networks, paths.cache]) mkdirSync(d, { recursive: true });
  let cgroupRoot = o.cgroupRoot;
  if (cgroupRoot === undefined) {
    cgroupRoot = join(dataDir, 'cgroup');
    mkdirSync(cgroupRoot, { recursive: true });
    writeFileSync(join(cgroupRoot, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
    writeFileSync(join(cgroupRoot, 'cgroup.subtree_control'), '');
  }
  let pci = o.pci;
  if (pci === undefined) {
    pci = { sys: join(dataDir, 'pci', 'sys'), dev: join(dataDir, 'pci', 'dev'), ops: refuseWrites, exec: refuseExec };
    for (const d of [pci.sys, pci.dev]) mkdirSync(d, { recursive: true });
  }

  const store = new SqliteStore(paths.db);
  const events = new EventBus(store);
  const imageStore = new ImageStore(dataDir);
  const host = new HostService(imageStore, 'tcg');
  const limits = { cpus: o.cpus, memory: o.memory, cpuList: Array.from({ length: o.cpus }, (_, i) => i) };
  const driver = new FakeDriver();
  const unplug = o.unplugTimeoutMs !== undefined ? { unplugTimeoutMs: o.unplugTimeoutMs } : {};
  const instances = new InstanceService({
    dataDir, store, images: imageStore, events, host: limits, log,
    pool: { host: { cpus: limits.cpus, memory: limits.memory }, config: { ...DEFAULT_POOL_CONFIG, reservedMemory: 0 } },
    accelerator: async () => 'tcg', driver, overlay: o.overlay ?? emptyOverlay,
  });
  const config = new InstanceConfigService({ instances, events, host: limits });
  const cpu = new CpuService({ instances, config, events, hostCpus: limits.cpuList, cgroupRoot, log });
  instances.addHooks('cpu', cpu.hooks());
  const images = new ImageService(dataDir, imageStore, store, events);
  const memory = new MemoryService({ instances, config, events, log });
  const volumes = new VolumeService(new VolumeStore(dataDir), events);
  instances.addHooks('memory', memory.hooks());
  instances.addHooks('files', vmFileHooks(runAs, (row) => instances.paths(row)));
  instances.addHooks('cloud-init', cloudInitHooks(runAs, (row) => instances.paths(row)));
  const storageDaemons = new StorageDaemonService({ instances, events, log, runRoot: paths.run, runAs });
  instances.addHooks('storage-daemons', storageDaemons.hooks());
  const disks = new DiskService({ instances, volumes, events, log, storageDaemons, runAs, ...unplug });
  instances.addHooks('disks', disks.hooks());
  const net = o.net ?? new FakeNetworkHost();
  const networks = new NetworkService({ store: new NetworkStore(dataDir), host: net, events, log });
  const vhostUser = new VhostUserService({ store: new VhostUserStore(dataDir), dataDir, events });
  const passthrough = new PassthroughService({ instances, dataDir, events, log, runAs, sys: pci.sys, dev: pci.dev, ops: pci.ops, ...(pci.exec ? { exec: pci.exec } : {}) });
  const nics = new NicService({
    instances, networks: networkDirectory(networks), events, log, vhostNet: () => false, ...unplug,
    sriovPf: (pf) => passthrough.checkPf(pf), vhostUser,
  });
  instances.addHooks('nics', nics.hooks());
  instances.addHooks('passthrough', passthrough.hooks());
  const guestAgent = new GuestAgentService({ instances });
  instances.addHooks('guest-agent', guestAgent.hooks());
  const snapshots = new SnapshotService({ instances, volumes: (row) => disks.resolve(row), agent: guestAgent, events, log });
  instances.addHooks('snapshots', snapshots.hooks());
  instances.addHooks('console-log', consoleLogHooks());
  networks.setInUse((network) => nics.usersOf(network));
  networks.setReservations((network) => nics.reservationsOn(network));
  vhostUser.setUsers((backend) => nics.backendUsers(backend));
  await networks.restore();
  await instances.reconcile();

  const migration = new MigrationService({ instances, events, log });
  const migrationRecovery = new MigrationRecoveryService({ instances, migration, events, log });
  await migrationRecovery.init();
  const metrics = new MetricsService({ instances, guestNics: (row) => guestAgent.nicCounters(row) });
  const services: Services = { instances, config, images, host, events, cpu, memory, volumes, disks, nics, networks, passthrough, vhostUser, tokens: new TokenService(store), guestAgent, snapshots, migration, migrationRecovery, metrics, history: new HistoryService({ samples: () => metrics.samples() }) };
  return {
    services, store, driver, net, cgroupRoot,
    stop() {
      instances.detachAll();
      storageDaemons.detachAll();
      store.close();
    },
  };
}
