/**
 * What the service graph holds, as sorted lines, to compare before and after a refused request: the data dir's
 * files, the store's rows, the fake host's bridges, taps and DHCP servers, the fake sysfs's SR-IOV and driver
 * state, the cgroup folder, and the fake hypervisor's live processes.
 */
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import type { Graph } from './service-graph.js';

/** The store's own files: its WAL grows with every event, whatever the request. */
const STORE_FILES = new Set(['corral.db', 'corral.db-wal', 'corral.db-shm']);

function walk(root: string, out: string[], dir = root): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = lstatSync(p);
    const rel = relative(root, p);
    if (st.isDirectory()) {
      out.push(`${rel}/`);
      walk(root, out, p);
    } else if (!STORE_FILES.has(rel)) {
      out.push(rel);
    }
  }
}

/** SR-IOV VF counts and driver bindings of the fake PCI devices. */
function pciState(sys: string): string[] {
  const devices = join(sys, 'bus/pci/devices');
  const out: string[] = [];
  for (const addr of readdirSync(devices)) {
    const d = join(devices, addr);
    try {
      out.push(`${addr} numvfs=${readFileSync(join(d, 'sriov_numvfs'), 'utf8').trim()}`);
    } catch { /* not a PF */ }
    try {
      out.push(`${addr} driver=${basename(readlinkSync(join(d, 'driver')))}`);
    } catch { /* unbound */ }
    try {
      const o = readFileSync(join(d, 'driver_override'), 'utf8').trim();
      if (o && o !== '(null)') out.push(`${addr} override=${o}`);
    } catch { /* none */ }
  }
  return out;
}

export function holdings(g: Graph): Record<string, string[]> {
  const files: string[] = [];
  walk(g.dataDir, files);
  const cgroups: string[] = [];
  walk(g.cgroupRoot, cgroups);
  return {
    files: files.sort(),
    instances: g.store.listInstances().map((r) => JSON.stringify({ ...r, updatedAt: undefined })).sort(),
    tokens: g.store.listTokens().map((t) => JSON.stringify(t)).sort(),
    network: g.net.snapshot(),
    pci: pciState(g.pci.sys).sort(),
    cgroups: cgroups.sort(),
    vms: [...g.driver.processes.values()].filter((p) => p.alive).map((p) => `${p.pid} ${p.uuid}`).sort(),
  };
}
