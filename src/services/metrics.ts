/**
 * What /metrics shows of each instance, read at scrape time from where `corral stats` and a user would look:
 * - CPU: the QEMU process's user + system time (/proc/PID/stat, every thread: vCPUs, I/O, the main loop) and each
 *   vCPU thread's (/proc/PID/task/TID/stat, the thread ids QEMU names in query-cpus-fast);
 * - memory: configured (the spec's boot memory), resident (smaps_rollup's Rss, as `corral stats` shows it), guest RAM
 *   resident (the Rss of the mappings of /proc/PID/smaps that back guest RAM: guestRamResident below), and the
 *   balloon's size (query-balloon) when the instance has one;
 * - block: bytes and operations read and written per disk (query-blockstats), named by the device's id;
 * - network: bytes and packets per NIC as the guest sees them, with where they come from (`source`): a tap's
 *   counters in /proc/self/net/dev, of the daemon's own network namespace, turned around (what the tap sends, the
 *   guest receives): "tap"; for a NIC with no tap (user-mode networking, which QEMU keeps no counter of), what the
 *   guest agent reports of the guest interface with the NIC's MAC (src/core/guest-nic-counters.ts; already the
 *   guest's side): "guest-agent", figures the guest could forge. A NIC neither gives is left out (no zeros).
 * A running or paused instance has all of it; the others only their state and configuration. One that cannot be
 * read (its QEMU just ended) keeps what was read, never a guess.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { guestNicByMac, type GuestNicCounters } from '../core/guest-nic-counters.js';
import { tapName } from '../core/nics.js';
import type { BlockStatsEntry } from '../vm/driver.js';
import { parseTaskStat } from './cpu-plan.js';
import { parseFlatRam, parseGpa2hva, parseSmaps, parseSmapsRollup, ramBlocks, residentIn, type GuestRamRange, type HostRange } from './memory-map.js';
import { processStartTicks } from '../qemu/proc.js';
import type { InstanceRow } from '../store/store.js';
import type { VmControl } from '../vm/driver.js';
import type { InstanceService } from './instances.js';

export interface BlockSample { device: string; readBytes: number; writeBytes: number; readOps: number; writeOps: number }
/** Where a NIC's counters come from: the host's tap, or the guest (its agent). */
export type NicSource = 'tap' | 'guest-agent';
export interface NicSample { nic: string; source: NicSource; rxBytes: number; txBytes: number; rxPackets: number; txPackets: number }

export interface InstanceSample {
  name: string;
  uuid: string;
  state: string;
  vcpus: number;
  memoryConfigured: number;
  /** null when not running, or unreadable */
  cpuSeconds: number | null;
  vcpuSeconds: Array<{ vcpu: number; seconds: number }>;
  residentBytes: number | null;
  /** host memory resident for guest RAM alone (QEMU's own memory left out); null when not running, or unreadable */
  guestResidentBytes: number | null;
  balloonBytes: number | null;
  blocks: BlockSample[];
  nics: NicSample[];
}

/**
 * The disks of query-blockstats, named by the device's id (`/machine/peripheral/disk1/virtio-backend` -> disk1),
 * else by the legacy drive or node name. Backends with no device (an NBD export, a backing node) are left out.
 */
export function blockSamples(list: readonly BlockStatsEntry[]): BlockSample[] {
  const out: BlockSample[] = [];
  for (const b of list) {
    const periph = b.qdev ? /^\/machine\/peripheral(?:-anon)?\/([^/]+)/.exec(b.qdev)?.[1] : undefined;
    const device = periph ?? (b.qdev || b.device || undefined);
    if (!device) continue;
    out.push({ device, readBytes: b.stats.rd_bytes, writeBytes: b.stats.wr_bytes, readOps: b.stats.rd_operations, writeOps: b.stats.wr_operations });
  }
  return out;
}

/** /proc/net/dev: each interface's received and transmitted bytes and packets. */
export function netDev(text: string): Map<string, { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number }> {
  const out = new Map<string, { rxBytes: number; rxPackets: number; txBytes: number; txPackets: number }>();
  for (const line of text.split('\n')) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 16 || f.some((x) => !Number.isFinite(x))) continue;
    out.set(m[1]!, { rxBytes: f[0]!, rxPackets: f[1]!, txBytes: f[8]!, txPackets: f[9]! });
  }
  return out;
}

/** Rss of /proc/PID/smaps_rollup (read as `corral stats` reads it), or status's VmRSS, bytes. */
export function rssBytes(text: string): number | null {
  const rss = parseSmapsRollup(text).rss;
  if (rss !== null) return rss;
  const m = /^VmRSS:\s+(\d+) kB/m.exec(text);
  return m ? Number(m[1]) * 1024 : null;
}

export interface MetricsDeps {
  instances: InstanceService;
  proc?: string;
  /** clock ticks per second (getconf CLK_TCK: 100 on Linux) */
  clkTck?: number;
  /** the guest agent's interface counters of a running instance, null when it does not answer (GuestAgentService.nicCounters) */
  guestNics?: (row: InstanceRow) => Promise<GuestNicCounters[] | null>;
}

export class MetricsService {
  private readonly proc: string;
  private readonly tck: number;
  /** the host-virtual ranges of each running QEMU's RAM blocks, by instance uuid, learnt once per QEMU and RAM size */
  private readonly ram = new Map<string, { key: string; ranges: HostRange[] }>();

  constructor(private readonly d: MetricsDeps) {
    this.proc = d.proc ?? '/proc';
    this.tck = d.clkTck ?? 100;
  }

  async samples(): Promise<InstanceSample[]> {
    const dev = this.netDev();
    // the stored rows, not list()'s views: those also stat each disk and read each exit file, which nothing here shows
    const rows = this.d.instances.listRows();
    const live = new Set(rows.filter((r) => r.pid !== null).map((r) => r.uuid));
    for (const uuid of [...this.ram.keys()]) if (!live.has(uuid)) this.ram.delete(uuid);
    return Promise.all(rows.map((r) => this.sample(r, dev)));
  }

  /** The NICs of a running instance (INVALID_STATE otherwise) with their counters, where there are some. */
  async nics(name: string): Promise<{ row: InstanceRow; nics: NicSample[] }> {
    const { row } = this.d.instances.live(name);
    const dev = this.netDev();
    return { row, nics: nicSamples(row, dev, await this.guestNics(row, dev)) };
  }

  private netDev(): ReturnType<typeof netDev> {
    return netDev(this.read(join(this.proc, 'self', 'net', 'dev')) ?? '');
  }

  /** The agent's counters when a NIC has no tap to count it; never throws. */
  private async guestNics(v: InstanceRow, dev: ReturnType<typeof netDev>): Promise<GuestNicCounters[] | null> {
    const untapped = (v.spec.nics ?? []).some((n) => !dev.has(tapName(v.uuid, n.id)));
    if (!untapped || !this.d.guestNics) return null;
    return this.d.guestNics(v).catch(() => null);
  }

  private read(path: string): string | null {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return null;
    }
  }

  private async sample(v: InstanceRow, dev: ReturnType<typeof netDev>): Promise<InstanceSample> {
    const s: InstanceSample = {
      name: v.name, uuid: v.uuid, state: v.state, vcpus: v.spec.cpus, memoryConfigured: v.spec.memory,
      cpuSeconds: null, vcpuSeconds: [], residentBytes: null, guestResidentBytes: null, balloonBytes: null, blocks: [], nics: [],
    };
    if ((v.state !== 'running' && v.state !== 'paused') || v.pid === null) return s;
    const pid = String(v.pid);
    const stat = this.read(join(this.proc, pid, 'stat'));
    const ticks = stat ? parseTaskStat(stat)?.ticks : undefined;
    if (ticks !== undefined) s.cpuSeconds = ticks / this.tck;
    s.residentBytes = rssBytes(this.read(join(this.proc, pid, 'smaps_rollup')) ?? this.read(join(this.proc, pid, 'status')) ?? '');
    s.nics = nicSamples(v, dev);
    // asked alongside QMP, never holding the pass long (GuestAgentService.nicCounters)
    const guestNics = this.guestNics(v, dev);
    let vm;
    try {
      vm = this.d.instances.live(v.name).vm;
    } catch {
      return s; // it ended between the list and now
    }
    // not waited for before the vCPU threads' stats are read: learning the RAM blocks (once) takes QMP round trips
    const guest = this.guestRamResident(v, v.pid, vm).catch(() => null);
    const [vcpus, blocks, balloon] = await Promise.allSettled([
      vm.vcpus(),
      vm.blockStats(),
      v.spec.balloon ? vm.balloonSize() : Promise.resolve(null),
    ]);
    if (vcpus.status === 'fulfilled') {
      for (const c of vcpus.value) {
        const t = parseTaskStat(this.read(join(this.proc, pid, 'task', String(c['thread-id']), 'stat')) ?? '');
        if (t) s.vcpuSeconds.push({ vcpu: c['cpu-index'], seconds: t.ticks / this.tck });
      }
    }
    if (blocks.status === 'fulfilled') s.blocks = blockSamples(blocks.value);
    if (balloon.status === 'fulfilled') s.balloonBytes = balloon.value;
    s.guestResidentBytes = await guest;
    s.nics = nicSamples(v, dev, await guestNics);
    return s;
  }

  /**
   * Host memory resident for the instance's guest RAM: the Rss of the mappings of /proc/PID/smaps (not smaps_rollup,
   * which sums every mapping) that lie in its RAM blocks. The blocks (QEMU's flat view, gpa2hva: as GET
   * .../memory finds them) do not move while a QEMU runs, so they are learnt once per QEMU (pid and start time) and
   * again when the RAM size changes (a resize: virtio-mem or the balloon); each sample reads only smaps. Cheaper than
   * the memory route's pagemap (8 bytes a guest page) and as exact: the kernel counts each mapping's Rss.
   */
  private async guestRamResident(v: InstanceRow, pid: number, vm: VmControl): Promise<number | null> {
    const key = `${pid}:${processStartTicks(pid, this.proc)}:${v.spec.memory}:${v.spec.maxMemory}`;
    let known = this.ram.get(v.uuid);
    if (known?.key !== key) {
      const flat = parseFlatRam(await vm.memoryTree(), new Set(await vm.memdevs()));
      const seen = new Set<string>();
      const withHva: Array<GuestRamRange & { hva: number | null }> = [];
      for (const r of flat) {
        // one address per region: the block's other ranges are at their offsets from it
        const hva = seen.has(r.region) ? null : parseGpa2hva(await vm.gpaToHva(r.start));
        if (hva !== null) seen.add(r.region);
        withHva.push({ ...r, hva });
      }
      known = { key, ranges: ramBlocks(withHva) };
      this.ram.set(v.uuid, known); // kept even when empty (no memory backend): not asked again at each sample
    }
    if (known.ranges.length === 0) return null;
    const smaps = this.read(join(this.proc, String(pid), 'smaps'));
    return smaps === null ? null : residentIn(parseSmaps(smaps), known.ranges);
  }
}

/**
 * Each NIC's counters as the guest sees them: its tap's (turned around), else those the guest agent reports for
 * the guest interface with its MAC; a NIC with neither is left out.
 */
export function nicSamples(v: Pick<InstanceRow, 'uuid' | 'spec'>, dev: ReturnType<typeof netDev>, guest: readonly GuestNicCounters[] | null = null): NicSample[] {
  const out: NicSample[] = [];
  for (const n of v.spec.nics ?? []) {
    const t = dev.get(tapName(v.uuid, n.id));
    if (t) {
      out.push({ nic: n.id, source: 'tap', rxBytes: t.txBytes, txBytes: t.rxBytes, rxPackets: t.txPackets, txPackets: t.rxPackets });
      continue;
    }
    const g = guest ? guestNicByMac(guest, n.mac) : undefined;
    if (g) out.push({ nic: n.id, source: 'guest-agent', rxBytes: g.rxBytes, txBytes: g.txBytes, rxPackets: g.rxPackets, txPackets: g.txPackets });
  }
  return out;
}
