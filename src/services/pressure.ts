/**
 * The memory pressure controller. Every interval it reads the host's MemAvailable; below the threshold it
 * inflates the balloons of running guests, taking first from the guests with the most available memory (as
 * their balloon statistics report it), never leaving a guest less than what it uses plus a margin, at most
 * one step per guest per round. Once the host is above threshold + hysteresis it deflates them back, in steps,
 * to their ceiling (the boot size, or a smaller size a resize asked for). Each round that acts publishes
 * `memory.pressure` (what was taken from whom) or `memory.released` per guest. When ballooning is not enough (the
 * host stays below the threshold and rounds in a row find nothing more to take), it says so once in a while with
 * `memory.unrelieved` (no instance): a cluster controller run with --auto-rebalance answers it by live-migrating a
 * guest away (src/cluster/pressure-rebalance.ts); the event reaches it with the agent's heartbeat.
 *
 * Configuration (env): CORRAL_PRESSURE_INTERVAL seconds (default 5; 0 turns the controller off),
 * CORRAL_PRESSURE_THRESHOLD a size (default 10% of the host's MemTotal), CORRAL_PRESSURE_HYSTERESIS a size
 * (default 256M), CORRAL_PRESSURE_STEP a size (default 128M).
 */
import { CorralError } from '../core/errors.js';
import { MiB, parseSize } from '../core/units.js';
import { readMemInfo, type MemInfo } from '../host/basics.js';
import type { InstanceRow } from '../store/store.js';
import type { EventBus } from './events.js';
import type { BalloonSnapshot } from './memory.js';

export interface PressureConfig {
  /** seconds between rounds; 0 = off */
  interval: number;
  threshold: number;
  hysteresis: number;
  step: number;
  /** what a guest keeps above its use */
  margin: number;
  /** no balloon target below this */
  floor: number;
  /** a guest acted on is left alone this long (its statistics lag the balloon) */
  cooldownMs: number;
  /** rounds in a row below the threshold that take nothing before memory.unrelieved (default 3) */
  unrelievedRounds?: number;
  /** memory.unrelieved at most this often (default 60 s) */
  unrelievedEveryMs?: number;
}

export interface PressureVm {
  name: string;
  actual: number;
  ceiling: number;
  available: number | null;
  used: number | null;
}

export interface BalloonTarget {
  name: string;
  from: number;
  to: number;
}

export interface Plan {
  kind: 'inflate' | 'deflate' | 'none';
  targets: BalloonTarget[];
}

const mib = (b: number): number => Math.floor(b / MiB) * MiB;

/** The decision (pure): which balloons to move where, given the host's available memory. */
export function planBalloons(hostAvailable: number, cfg: Pick<PressureConfig, 'threshold' | 'hysteresis' | 'step' | 'margin' | 'floor'>, vms: PressureVm[]): Plan {
  if (hostAvailable < cfg.threshold) {
    let need = cfg.threshold - hostAvailable;
    const targets: BalloonTarget[] = [];
    const candidates = vms.filter((v) => v.available !== null && v.used !== null).sort((a, b) => b.available! - a.available!);
    for (const v of candidates) {
      if (need <= 0) break;
      const lowest = Math.max(cfg.floor, v.used! + cfg.margin);
      const canTake = Math.min(v.available! - cfg.margin, v.actual - lowest);
      const take = mib(Math.min(canTake, cfg.step, Math.max(need, MiB)));
      if (take < MiB) continue;
      targets.push({ name: v.name, from: v.actual, to: v.actual - take });
      need -= take;
    }
    return { kind: targets.length ? 'inflate' : 'none', targets };
  }
  if (hostAvailable > cfg.threshold + cfg.hysteresis) {
    let room = hostAvailable - cfg.threshold - cfg.hysteresis;
    const targets: BalloonTarget[] = [];
    for (const v of [...vms].sort((a, b) => (a.available ?? 0) - (b.available ?? 0))) {
      if (room < MiB) break;
      const give = mib(Math.min(v.ceiling - v.actual, cfg.step, room));
      if (give < MiB) continue;
      targets.push({ name: v.name, from: v.actual, to: v.actual + give });
      room -= give;
    }
    return { kind: targets.length ? 'deflate' : 'none', targets };
  }
  return { kind: 'none', targets: [] };
}

/** Settings from the environment; `total` is the host's MemTotal (for the default threshold). */
export function pressureConfigFrom(env: NodeJS.ProcessEnv, total: number): PressureConfig {
  const size = (k: string, dflt: number): number => (env[k] === undefined || env[k] === '' ? dflt : parseSize(k, env[k]));
  const interval = env.CORRAL_PRESSURE_INTERVAL === undefined || env.CORRAL_PRESSURE_INTERVAL === '' ? 5 : Number(env.CORRAL_PRESSURE_INTERVAL);
  if (!Number.isFinite(interval) || interval < 0) throw new CorralError('INVALID_SPEC', `CORRAL_PRESSURE_INTERVAL must be a number of seconds, got "${env.CORRAL_PRESSURE_INTERVAL}"`, { field: 'CORRAL_PRESSURE_INTERVAL' });
  return {
    interval, threshold: size('CORRAL_PRESSURE_THRESHOLD', mib(total / 10)), hysteresis: size('CORRAL_PRESSURE_HYSTERESIS', 256 * MiB),
    step: size('CORRAL_PRESSURE_STEP', 128 * MiB), margin: 64 * MiB, floor: 64 * MiB, cooldownMs: Math.max(5000, interval * 1000),
  };
}

export interface PressureDeps {
  events: EventBus;
  /** running instances */
  instances: () => InstanceRow[];
  snapshot: (row: InstanceRow) => Promise<BalloonSnapshot | null>;
  setBalloon: (name: string, bytes: number) => Promise<void>;
  memInfo?: () => MemInfo;
  log: { warn(o: object, m?: string): void };
}

export class PressureController {
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private lastAction = new Map<string, number>();
  /** rounds in a row below the threshold that took nothing */
  private shortRounds = 0;
  private lastUnrelieved = -Infinity;

  constructor(private cfg: PressureConfig, private d: PressureDeps) {}

  start(): void {
    if (this.cfg.interval <= 0 || this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.cfg.interval * 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Ballooning is not enough: below the threshold, and rounds in a row took nothing (see the file's comment). */
  private noteShortfall(available: number, taken: number, now: number): void {
    if (available >= this.cfg.threshold || taken > 0) {
      this.shortRounds = 0;
      return;
    }
    this.shortRounds++;
    if (this.shortRounds < (this.cfg.unrelievedRounds ?? 3) || now - this.lastUnrelieved < (this.cfg.unrelievedEveryMs ?? 60_000)) return;
    this.d.events.publish('memory.unrelieved', null, { hostAvailable: available, threshold: this.cfg.threshold, short: this.cfg.threshold - available, rounds: this.shortRounds });
    this.shortRounds = 0;
    this.lastUnrelieved = now;
  }

  /** One round; returns what it did. Rounds never overlap. */
  async tick(now = Date.now()): Promise<Plan> {
    if (this.running) return { kind: 'none', targets: [] };
    this.running = true;
    try {
      const host = (this.d.memInfo ?? (() => readMemInfo()))();
      const vms: Array<PressureVm & { uuid: string }> = [];
      for (const row of this.d.instances()) {
        if ((this.lastAction.get(row.uuid) ?? 0) + this.cfg.cooldownMs > now) continue;
        try {
          const s = await this.d.snapshot(row);
          if (s) vms.push(s);
        } catch (e) {
          this.d.log.warn({ instance: row.name, err: (e as Error).message }, 'pressure: cannot read balloon');
        }
      }
      const plan = planBalloons(host.available, this.cfg, vms);
      const done: BalloonTarget[] = [];
      for (const t of plan.targets) {
        try {
          await this.d.setBalloon(t.name, t.to);
          done.push(t);
          const uuid = vms.find((v) => v.name === t.name)?.uuid;
          if (uuid) this.lastAction.set(uuid, now);
        } catch (e) {
          this.d.log.warn({ instance: t.name, err: (e as Error).message }, 'pressure: cannot move balloon');
        }
      }
      // One event per guest acted on: what was taken from (or given back to) whom.
      for (const t of done) {
        const detail = { from: t.from, to: t.to, bytes: Math.abs(t.from - t.to), hostAvailable: host.available, threshold: this.cfg.threshold };
        this.d.events.publish(plan.kind === 'inflate' ? 'memory.pressure' : 'memory.released', t.name, detail);
      }
      this.noteShortfall(host.available, plan.kind === 'inflate' ? done.length : 0, now);
      return { kind: plan.kind, targets: done };
    } finally {
      this.running = false;
    }
  }
}
