/**
 * A short history of one instance's figures (pure): a fixed-size ring of samples, one column of float64 per figure
 * (11 columns and the times x 720 samples = 68 KiB per instance, whatever happens), the oldest sample overwritten
 * once it is full. A missing figure is NaN in the ring and null out of it. Counters (CPU seconds, bytes) are kept
 * as read; their rates are computed when the series is read, between each sample and the one before it in the
 * ring: none for the first, none across a gap (a row of nulls, pushed when the instance stopped), none when a
 * counter went back (a restart, a vCPU unplugged, a disk detached, a guest that rebooted reporting its NIC counters
 * afresh), and no NIC rate when the NICs measured are not as many as at the sample before (a NIC whose guest agent
 * did not answer is missing from the sum: its return would look like a burst).
 */

export const HISTORY_FIELDS = [
  'vcpuSeconds', 'vcpus', 'residentBytes', 'guestResidentBytes', 'configuredBytes', 'balloonBytes',
  'diskReadBytes', 'diskWriteBytes', 'nicRxBytes', 'nicTxBytes', 'nics',
] as const;
export type HistoryField = typeof HISTORY_FIELDS[number];

/** One sample: its time (ms since the epoch) and each figure, null when it could not be read. */
export type HistorySample = { t: number } & Record<HistoryField, number | null>;

/** A history as the API returns it: one array per figure, the same length as `t`, oldest first. */
export interface HistorySeries {
  t: number[];
  vcpuSeconds: Array<number | null>;
  /** vCPU threads measured */
  vcpus: Array<number | null>;
  /** the vCPU threads' host CPU time over the step, in percent of the instance's vCPUs (100: all of them busy) */
  cpuPercent: Array<number | null>;
  residentBytes: Array<number | null>;
  /** host memory resident for guest RAM alone (QEMU's own memory left out) */
  guestResidentBytes: Array<number | null>;
  configuredBytes: Array<number | null>;
  balloonBytes: Array<number | null>;
  diskReadBytes: Array<number | null>;
  diskWriteBytes: Array<number | null>;
  /** bytes per second over the step */
  diskReadRate: Array<number | null>;
  diskWriteRate: Array<number | null>;
  nicRxBytes: Array<number | null>;
  nicTxBytes: Array<number | null>;
  nicRxRate: Array<number | null>;
  nicTxRate: Array<number | null>;
  /** NICs whose counters were read (summed in nicRxBytes and nicTxBytes) */
  nics: Array<number | null>;
}

const RATES = [['diskReadBytes', 'diskReadRate'], ['diskWriteBytes', 'diskWriteRate'], ['nicRxBytes', 'nicRxRate'], ['nicTxBytes', 'nicTxRate']] as const;

export class HistoryRing {
  private readonly t: Float64Array;
  private readonly cols: Record<HistoryField, Float64Array>;
  /** where the next sample goes */
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 2) throw new RangeError(`a history holds at least 2 samples, not ${capacity}`);
    this.t = new Float64Array(capacity);
    this.cols = Object.fromEntries(HISTORY_FIELDS.map((f) => [f, new Float64Array(capacity)])) as Record<HistoryField, Float64Array>;
  }

  get length(): number {
    return this.count;
  }

  push(s: HistorySample): void {
    this.t[this.next] = s.t;
    for (const f of HISTORY_FIELDS) this.cols[f][this.next] = s[f] ?? Number.NaN;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Push a row of nulls (the instance stopped): the charts show a gap, and no rate spans it. Once only. */
  gap(t: number): void {
    if (this.count === 0 || this.lastIsGap()) return;
    this.push({ t, ...Object.fromEntries(HISTORY_FIELDS.map((f) => [f, null])) } as HistorySample);
  }

  private lastIsGap(): boolean {
    const i = (this.next - 1 + this.capacity) % this.capacity;
    return HISTORY_FIELDS.every((f) => Number.isNaN(this.cols[f][i]!));
  }

  /** The latest sample, or null when there is none. */
  latest(): HistorySample | null {
    if (this.count === 0) return null;
    return this.at(this.count - 1);
  }

  /** The i-th sample, oldest first. */
  private at(i: number): HistorySample {
    const k = (this.next - this.count + i + this.capacity) % this.capacity;
    const s = { t: this.t[k]! } as HistorySample;
    for (const f of HISTORY_FIELDS) s[f] = num(this.cols[f][k]!);
    return s;
  }

  /** The samples taken after `since` (ms; all of them without it), with their rates. */
  series(since?: number): HistorySeries {
    const out: HistorySeries = {
      t: [], vcpuSeconds: [], vcpus: [], cpuPercent: [], residentBytes: [], guestResidentBytes: [], configuredBytes: [], balloonBytes: [],
      diskReadBytes: [], diskWriteBytes: [], diskReadRate: [], diskWriteRate: [], nicRxBytes: [], nicTxBytes: [], nicRxRate: [], nicTxRate: [], nics: [],
    };
    let prev: HistorySample | null = null;
    for (let i = 0; i < this.count; i++) {
      const s = this.at(i);
      if (since === undefined || s.t > since) {
        out.t.push(s.t);
        for (const f of HISTORY_FIELDS) out[f].push(s[f]);
        const cpu = prev ? rate(prev, s, 'vcpuSeconds') : null;
        out.cpuPercent.push(cpu === null || !s.vcpus ? null : round((cpu * 100) / s.vcpus, 2));
        for (const [field, r] of RATES) {
          const sameNics = !field.startsWith('nic') || prev?.nics === s.nics;
          out[r].push(prev && sameNics ? roundRate(rate(prev, s, field)) : null);
        }
      }
      prev = s;
    }
    return out;
  }
}

const num = (x: number): number | null => (Number.isNaN(x) ? null : x);
const round = (x: number, digits: number): number => Math.round(x * 10 ** digits) / 10 ** digits;
const roundRate = (x: number | null): number | null => (x === null ? null : round(x, 1));

/** The change of a counter per second between two samples; null when either is missing or it went back. */
export function rate(a: HistorySample, b: HistorySample, field: HistoryField): number | null {
  const x = a[field];
  const y = b[field];
  const dt = (b.t - a.t) / 1000;
  if (x === null || y === null || dt <= 0 || y < x) return null;
  return (y - x) / dt;
}
