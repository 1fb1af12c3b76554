/**
 * What an agent tells its cluster about this host beyond its pool, for the controller's migration checks and CPU
 * baseline (core/cpu-models.ts, core/migration-checks.ts):
 * - the CPU report: the accelerator guests run with, the QEMU version, the named CPU models that QEMU can run under
 *   it (qemu/probe-cpu.ts, probed once the accelerator is decided, again if it changes) and the host's own CPU
 *   (model name, vendor, flags: what `-cpu host` passes through). Null until the first probe is done; heartbeats
 *   carry it only when it changed (agent-link.ts).
 * - the memory report: MemAvailable and the hugepage pools, read afresh for each heartbeat.
 */
import { dirname, join } from 'node:path';
import type { CpuReport } from '../core/cpu-models.js';
import type { MemoryReport } from '../core/migration-checks.js';
import { readMemInfo } from '../host/basics.js';
import { readCpuInfo } from '../host/cpu.js';
import { readHugepages } from '../host/memory.js';
import type { RunAs } from '../host/run-as.js';
import { probeCpuModels } from '../qemu/probe-cpu.js';
import { PROBE_CACHE, type HostService } from './host.js';

/** how long after a failed probe of the CPU models the next one waits */
const RETRY_MS = 60_000;

export class HostReporter {
  private current: CpuReport | null = null;
  private inflight: Promise<void> | null = null;
  private failedAt = -Infinity;
  private hostCpu: CpuReport['hostCpu'] | null = null;

  constructor(
    private readonly host: Pick<HostService, 'capabilities' | 'accelerator'>,
    private readonly o: { runAs?: RunAs; cacheFile?: string; proc?: string; sys?: string; log?: { warn: (o: object, m: string) => void } } = {},
  ) {}

  /** The CPU report as last probed (null: not yet); starts a probe when none runs and the accelerator may have changed. */
  cpu(): CpuReport | null {
    if (!this.inflight && performance.now() - this.failedAt >= RETRY_MS) this.inflight = this.probe().finally(() => { this.inflight = null; });
    return this.current;
  }

  /** The probe that cpu() starts, to wait for (tests, start-up). */
  async ready(): Promise<CpuReport | null> {
    this.cpu();
    await this.inflight;
    return this.current;
  }

  memory(): MemoryReport {
    return { available: readMemInfo(this.o.proc).available, hugepages: readHugepages(this.o.sys) };
  }

  private async probe(): Promise<void> {
    try {
      const [caps, decision] = await Promise.all([this.host.capabilities(), this.host.accelerator()]);
      if (this.current && this.current.accel === decision.accel && this.current.qemuVersion === caps.version) return;
      const models = await probeCpuModels({
        accel: decision.accel, qemuVersion: caps.version, binary: caps.binary, cacheFile: this.o.cacheFile ?? join(dirname(PROBE_CACHE), 'cpu-models.json'),
        ...(this.o.runAs ? { runAs: this.o.runAs } : {}),
      });
      const info = (this.hostCpu ??= (({ vendor, model, flags }) => ({ vendor, model, flags: [...flags].sort() }))(readCpuInfo(this.o.proc)));
      this.current = { accel: decision.accel, qemuVersion: caps.version, models, hostCpu: info };
    } catch (e) {
      this.failedAt = performance.now();
      this.o.log?.warn({ error: (e as Error).message }, 'cannot list the CPU models this host\'s QEMU runs: the cluster cannot check migrations to it');
    }
  }
}
