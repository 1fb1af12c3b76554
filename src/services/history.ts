/**
 * The short history behind the web console's charts: every step (5 s; env CORRAL_HISTORY_STEP_MS) one pass over
 * every instance, read as GET /metrics reads it (MetricsService.samples: /proc/PID/stat and task stats through
 * cpu-plan's parseTaskStat, smaps_rollup through memory-map's parseSmapsRollup, QMP query-cpus-fast,
 * query-blockstats and query-balloon, the taps' counters in /proc/self/net/dev, the guest agent's for NICs with no
 * tap), kept per running or paused instance in a ring of 720 samples (an hour at 5 s; src/core/history-ring.ts).
 * An instance that stops gets one row of nulls (a gap), and its ring is kept until it is deleted: the next pass
 * after that drops it. Rings are keyed by the instance's uuid, so a new instance of the same name starts afresh.
 *
 * What is kept per sample: the vCPU threads' CPU seconds (and how many threads), the QEMU process's Rss, the host
 * memory resident for guest RAM alone (smaps' mappings of the RAM blocks: MetricsService), the configured memory, the balloon's size, the bytes read and written over all disks and received and sent
 * over all NICs that have counters (a tap's, or for user-mode networking what the guest agent reports: null when
 * it does not answer), and how many NICs that sum holds; the latest sources of those counters are kept beside.
 */
import { HistoryRing, type HistorySample, type HistorySeries } from '../core/history-ring.js';
import { CorralError } from '../core/errors.js';
import type { InstanceSample, NicSource } from './metrics.js';

export const HISTORY_STEP_MS = 5000;
export const HISTORY_SAMPLES = 720;

export interface HistoryDeps {
  /** one reading of every instance (MetricsService.samples) */
  samples: () => Promise<InstanceSample[]>;
  stepMs?: number;
  capacity?: number;
  now?: () => number;
  onError?: (e: unknown) => void;
}

/** What the overview shows of an instance: its latest memory figures. */
export interface LatestMemory {
  name: string;
  t: number;
  configuredBytes: number;
  residentBytes: number | null;
  guestResidentBytes: number | null;
  balloonBytes: number | null;
}

/** The step from the environment (CORRAL_HISTORY_STEP_MS), 5 s by default; 100 ms to an hour. */
export function historyStepFrom(env: NodeJS.ProcessEnv): number {
  const raw = env.CORRAL_HISTORY_STEP_MS;
  if (raw === undefined || raw === '') return HISTORY_STEP_MS;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 100 || n > 3_600_000) {
    throw new CorralError('INVALID_SPEC', `CORRAL_HISTORY_STEP_MS: ${JSON.stringify(raw)} is not a whole number of milliseconds from 100 to 3600000`, { field: 'CORRAL_HISTORY_STEP_MS' });
  }
  return n;
}

/** A reading as one sample of the history: totals over the vCPU threads, the disks and the NICs. */
export function historySample(s: InstanceSample, t: number): HistorySample {
  const sum = <T>(xs: readonly T[], f: (x: T) => number): number | null => (xs.length === 0 ? null : xs.reduce((a, x) => a + f(x), 0));
  return {
    t,
    vcpuSeconds: sum(s.vcpuSeconds, (v) => v.seconds),
    vcpus: s.vcpuSeconds.length === 0 ? null : s.vcpuSeconds.length,
    residentBytes: s.residentBytes,
    guestResidentBytes: s.guestResidentBytes,
    configuredBytes: s.memoryConfigured,
    balloonBytes: s.balloonBytes,
    diskReadBytes: sum(s.blocks, (b) => b.readBytes),
    diskWriteBytes: sum(s.blocks, (b) => b.writeBytes),
    nicRxBytes: sum(s.nics, (n) => n.rxBytes),
    nicTxBytes: sum(s.nics, (n) => n.txBytes),
    nics: s.nics.length === 0 ? null : s.nics.length,
  };
}

export class HistoryService {
  readonly stepMs: number;
  readonly capacity: number;
  private readonly rings = new Map<string, { name: string; ring: HistoryRing; nicSources: NicSource[] }>();
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  /** how long the last pass took, ms (null before the first) */
  lastPassMs: number | null = null;

  constructor(private readonly d: HistoryDeps) {
    this.stepMs = d.stepMs ?? HISTORY_STEP_MS;
    this.capacity = d.capacity ?? HISTORY_SAMPLES;
    this.now = d.now ?? Date.now;
  }

  /** Sample every step until stop(), on a steady cadence (a slow pass delays the next, never overlaps it). */
  start(): void {
    if (this.running) return;
    this.running = true;
    const loop = async (): Promise<void> => {
      const began = this.now();
      await this.tick().catch((e: unknown) => this.d.onError?.(e));
      if (!this.running) return;
      this.timer = setTimeout(() => void loop(), Math.max(0, began + this.stepMs - this.now()));
      this.timer.unref?.();
    };
    void loop();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** One pass: a sample for each running or paused instance, a gap for each stopped one, gone ones dropped. */
  async tick(): Promise<void> {
    const t = this.now();
    const began = performance.now();
    const samples = await this.d.samples();
    const seen = new Set<string>();
    for (const s of samples) {
      seen.add(s.uuid);
      let e = this.rings.get(s.uuid);
      if (s.state !== 'running' && s.state !== 'paused') {
        e?.ring.gap(t);
        continue;
      }
      if (!e) {
        e = { name: s.name, ring: new HistoryRing(this.capacity), nicSources: [] };
        this.rings.set(s.uuid, e);
      }
      e.name = s.name;
      e.ring.push(historySample(s, t));
      if (s.nics.length > 0) e.nicSources = [...new Set(s.nics.map((n) => n.source))].sort();
    }
    for (const uuid of [...this.rings.keys()]) if (!seen.has(uuid)) this.rings.delete(uuid);
    this.lastPassMs = performance.now() - began;
  }

  /** The history of an instance (by uuid) after `since` (ms since the epoch); empty when it never ran here. */
  series(uuid: string, since?: number): HistorySeries {
    return (this.rings.get(uuid)?.ring ?? EMPTY).series(since);
  }

  /** Where the latest NIC counters of an instance (by uuid) came from: tap, guest-agent or both; empty when none. */
  nicSources(uuid: string): NicSource[] {
    return this.rings.get(uuid)?.nicSources ?? [];
  }

  /** How many instances have a history (bounded by the instances there are). */
  get size(): number {
    return this.rings.size;
  }

  /** The latest memory figures of each instance whose latest sample is not a gap (it runs). */
  latestMemory(): LatestMemory[] {
    const out: LatestMemory[] = [];
    for (const { name, ring } of this.rings.values()) {
      const s = ring.latest();
      if (!s || s.configuredBytes === null) continue;
      out.push({ name, t: s.t, configuredBytes: s.configuredBytes, residentBytes: s.residentBytes, guestResidentBytes: s.guestResidentBytes, balloonBytes: s.balloonBytes });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }
}

const EMPTY = new HistoryRing(2);

/**
 * Memory reclaimed from running guests, from their latest samples: per instance, its configured memory less the host
 * memory resident for its guest RAM (never below 0; QEMU's own memory, under TCG its translation cache, is not
 * counted), summed. That is what the host does not hold for the guests: RAM they never touched, pages free page
 * reporting gave back, and the pages a balloon holds (QEMU discards them). The balloons' share (configured less the
 * balloon's size) is shown on its own: it is a part of the reclaimed memory, not to be added to it. An instance
 * whose guest RAM could not be measured counts in `configured` only.
 */
export function reclaimed(latest: readonly LatestMemory[]): { configured: number; guestResident: number; notResident: number; balloon: number } {
  let configured = 0;
  let guestResident = 0;
  let notResident = 0;
  let balloon = 0;
  for (const m of latest) {
    configured += m.configuredBytes;
    if (m.guestResidentBytes !== null) {
      guestResident += m.guestResidentBytes;
      notResident += Math.max(0, m.configuredBytes - m.guestResidentBytes);
    }
    if (m.balloonBytes !== null) balloon += Math.max(0, m.configuredBytes - m.balloonBytes);
  }
  return { configured, guestResident, notResident, balloon };
}
