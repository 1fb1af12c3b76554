/**
 * The daemon's service graph as src/daemon/main.ts wires it, over a temporary data dir and a real SQLite store,
 * with the host kept out where touching it is neither safe nor cheap in a unit test:
 * - the hypervisor is the fake one (src/vm/fake-driver.ts): no QEMU runs;
 * - the network service runs over an in-memory host (FakeNetworkHost, test/unit/services/fake-network-host.ts): no bridge, nft table, tap or dnsmasq;
 * - PCI passthrough and SR-IOV see a fake sysfs and /dev (test/fixtures/pci/host1) and a simulated kernel;
 * - cgroups are a plain folder laid out as a cgroup v2 root;
 * - a fixed host of 8 CPUs and 16 GiB;
 * - files are handed to root (uid 0) instead of corral-qemu.
 * qemu-img (overlays, volumes, imports) and qemu-storage-daemon (vhost-user-blk disks) are the real programs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Services } from '../../../src/api/services.js';
import { dataPaths } from '../../../src/core/paths.js';
import { DEFAULT_POOL_CONFIG } from '../../../src/core/pool.js';
import type { RunAs } from '../../../src/host/run-as.js';
import { consoleLogHooks } from '../../../src/services/console-log.js';
import { CpuService } from '../../../src/services/cpu.js';
import { DiskService } from '../../../src/services/disks.js';
import { EventBus } from '../../../src/services/events.js';
import { HostService } from '../../../src/services/host.js';
import { ImageService } from '../../../src/services/images.js';
import { InstanceConfigService } from '../../../src/services/instance-config.js';
import { InstanceService } from '../../../src/services/instances.js';
import { MemoryService } from '../../../src/services/memory.js';
import { NetworkService } from '../../../src/services/networks.js';
import { NicService, networkDirectory } from '../../../src/services/nics.js';
import { PassthroughService } from '../../../src/services/passthrough.js';
import { StorageDaemonService } from '../../../src/services/storage-daemons.js';
import { TokenService } from '../../../src/services/tokens.js';
import { VhostUserService } from '../../../src/services/vhost-user.js';
import { vmFileHooks } from '../../../src/services/vm-files.js';
import { VolumeService } from '../../../src/services/volumes.js';
import { NetworkStore } from '../../../src/network/store.js';
import { VhostUserStore } from '../../../src/network/vhost-user-store.js';
import { ImageStore, type ImageRecord } from '../../../src/storage/images.js';
import { VolumeStore } from '../../../src/storage/volumes.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { FakeDriver } from '../../../src/vm/fake-driver.js';
import { copyPciFixture, fakeKernel, type FakeHost } from '../host/pci-fixture.js';
import { FakeNetworkHost } from '../services/fake-network-host.js';

const GiB = 1024 ** 3;
const ROOT: RunAs = { user: 'root', uid: 0, gid: 0, groups: [] };
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };

export interface Graph {
  services: Services;
  dataDir: string;
  store: SqliteStore;
  driver: FakeDriver;
  net: FakeNetworkHost;
  pci: FakeHost;
  cgroupRoot: string;
  /** stop every instance (their hooks undo taps, bindings, storage daemons) and remove the temporary dirs */
  close(): Promise<void>;
}

/** A kernel-boot image named `tiny` whose disk is a real (empty) qcow2, as the tiny image's record reads. */
function plantTiny(dataDir: string): void {
  const dir = join(dataPaths(dataDir).images, 'tiny');
  mkdirSync(dir, { recursive: true });
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'root.qcow2'), '64M']);
  writeFileSync(join(dir, 'vmlinuz'), '');
  writeFileSync(join(dir, 'initrd'), '');
  const rec: ImageRecord = {
    name: 'tiny', kind: 'kernel', format: 'qcow2', disk: join(dir, 'root.qcow2'), kernel: join(dir, 'vmlinuz'), initrd: join(dir, 'initrd'),
    cmdline: 'console=ttyS0', virtualSize: 64 * 1024 * 1024, createdAt: '2026-01-01T00:00:00.000Z', source: 'tiny',
  };
  writeFileSync(join(dir, 'image.json'), JSON.stringify(rec));
}

export async function serviceGraph(): Promise<Graph> {
  const dataDir = mkdtempSync(join(tmpdir(), 'corral-fuzz-graph-'));
  const paths = dataPaths(dataDir);
  for (const d of [paths.instances, paths.run, paths.volumes, paths.images, paths.networks, paths.cache]) mkdirSync(d, { recursive: true });
  plantTiny(dataDir);
  const cgroupRoot = mkdtempSync(join(tmpdir(), 'corral-fuzz-cgroup-'));
  writeFileSync(join(cgroupRoot, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  writeFileSync(join(cgroupRoot, 'cgroup.subtree_control'), '');
  const pci = copyPciFixture();

  const store = new SqliteStore(paths.db);
  const events = new EventBus(store);
  const imageStore = new ImageStore(dataDir);
  const host = new HostService(imageStore, 'tcg');
  const limits = { cpus: 8, memory: 16 * GiB, cpuList: [0, 1, 2, 3, 4, 5, 6, 7] };
  const driver = new FakeDriver();
  const instances = new InstanceService({
    dataDir, store, images: imageStore, events, host: limits, log: quiet,
    pool: { host: { cpus: limits.cpus, memory: limits.memory }, config: { ...DEFAULT_POOL_CONFIG, reservedMemory: 0 } },
    accelerator: async () => 'tcg', driver,
  });
  const config = new InstanceConfigService({ instances, events, host: limits });
  const cpu = new CpuService({ instances, config, events, hostCpus: limits.cpuList, cgroupRoot, log: quiet });
  instances.addHooks('cpu', cpu.hooks());
  const images = new ImageService(dataDir, imageStore, store, events);
  const memory = new MemoryService({ instances, config, events, log: quiet });
  const volumes = new VolumeService(new VolumeStore(dataDir), events);
  instances.addHooks('memory', memory.hooks());
  instances.addHooks('files', vmFileHooks(ROOT, (row) => instances.paths(row)));
  const storageDaemons = new StorageDaemonService({ instances, events, log: quiet, runRoot: paths.run, runAs: ROOT });
  instances.addHooks('storage-daemons', storageDaemons.hooks());
  const disks = new DiskService({ instances, volumes, events, log: quiet, storageDaemons, runAs: ROOT, unplugTimeoutMs: 200 });
  instances.addHooks('disks', disks.hooks());
  const net = new FakeNetworkHost(4_900_000);
  const networks = new NetworkService({ store: new NetworkStore(dataDir), host: net, events, log: quiet });
  const vhostUser = new VhostUserService({ store: new VhostUserStore(dataDir), dataDir, events });
  const passthrough = new PassthroughService({ instances, dataDir, events, log: quiet, runAs: ROOT, sys: pci.sys, dev: pci.dev, ops: fakeKernel(pci) });
  const nics = new NicService({
    instances, networks: networkDirectory(networks), events, log: quiet, vhostNet: () => false, unplugTimeoutMs: 200,
    sriovPf: (pf) => passthrough.checkPf(pf), vhostUser,
  });
  instances.addHooks('nics', nics.hooks());
  instances.addHooks('passthrough', passthrough.hooks());
  instances.addHooks('console-log', consoleLogHooks());
  networks.setInUse((network) => nics.usersOf(network));
  networks.setReservations((network) => nics.reservationsOn(network));
  vhostUser.setUsers((backend) => nics.backendUsers(backend));
  await networks.restore();
  await instances.reconcile();

  const services: Services = { instances, config, images, host, events, cpu, memory, volumes, disks, nics, networks, passthrough, vhostUser, tokens: new TokenService(store) };
  return {
    services, dataDir, store, driver, net, pci, cgroupRoot,
    async close() {
      for (const r of store.listInstances()) {
        if (r.state === 'stopped') continue;
        await instances.kill(r.name).catch(() => undefined);
      }
      instances.detachAll();
      storageDaemons.detachAll();
      store.close();
      for (const d of [dataDir, cgroupRoot, pci.root]) rmSync(d, { recursive: true, force: true });
    },
  };
}
