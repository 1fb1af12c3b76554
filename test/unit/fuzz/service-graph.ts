/**
 * The daemon's service graph for the fuzzing of the real services: src/daemon/sim-graph.ts's (fake hypervisor,
 * in-memory network host, a cgroup v2 root that is a plain folder, a fixed host of 8 CPUs and 16 GiB), over a
 * temporary data dir, with:
 * - PCI passthrough and SR-IOV over a fake sysfs and /dev (test/fixtures/pci/host1) and a simulated kernel;
 * - files handed to root (uid 0) instead of corral-qemu;
 * - qemu-img (overlays, volumes, imports) and qemu-storage-daemon (vhost-user-blk disks) the real programs, and the
 *   `tiny` image's disk a real (empty) qcow2.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Services } from '../../../src/api/services.js';
import { dataPaths } from '../../../src/core/paths.js';
import { simServiceGraph } from '../../../src/daemon/sim-graph.js';
import type { RunAs } from '../../../src/host/run-as.js';
import { FakeNetworkHost } from '../../../src/network/fake-host.js';
import { createOverlay } from '../../../src/qemu/img.js';
import type { ImageRecord } from '../../../src/storage/images.js';
import type { SqliteStore } from '../../../src/store/sqlite.js';
import type { FakeDriver } from '../../../src/vm/fake-driver.js';
import { copyPciFixture, fakeKernel, type FakeHost } from '../host/pci-fixture.js';

const GiB = 1024 ** 3;
const ROOT: RunAs = { user: 'root', uid: 0, gid: 0, groups: [] };

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
  mkdirSync(dataPaths(dataDir).images, { recursive: true });
  plantTiny(dataDir);
  const cgroupRoot = mkdtempSync(join(tmpdir(), 'corral-fuzz-cgroup-'));
  writeFileSync(join(cgroupRoot, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
  writeFileSync(join(cgroupRoot, 'cgroup.subtree_control'), '');
  const pci = copyPciFixture();
  const g = await simServiceGraph({
    dataDir, cpus: 8, memory: 16 * GiB, runAs: ROOT, cgroupRoot, pci: { sys: pci.sys, dev: pci.dev, ops: fakeKernel(pci) },
    net: new FakeNetworkHost(4_900_000), overlay: createOverlay, unplugTimeoutMs: 200,
  });
  const { services, store } = g;
  return {
    services, dataDir, store, driver: g.driver, net: g.net, pci, cgroupRoot,
    async close() {
      for (const r of store.listInstances()) {
        if (r.state === 'stopped') continue;
        await services.instances.kill(r.name).catch(() => undefined);
      }
      g.stop();
      for (const d of [dataDir, cgroupRoot, pci.root]) rmSync(d, { recursive: true, force: true });
    },
  };
}
