/** Host facts and the accelerator decision, as `corral host show` and the instance service see them. */
import { hostname } from 'node:os';
import type { HostLimits, Accelerator } from '../core/spec.js';
import { readCpuModel, readMemInfo, readOnlineCpus } from '../host/basics.js';
import { readHostInventory, type HostInventory } from '../host/inventory.js';
import { decideAccelerator, probeCapabilities, type AccelDecision, type QemuCapabilities } from '../qemu/probe.js';
import type { RunAs } from '../host/run-as.js';
import type { ImageStore } from '../storage/images.js';

/** What `GET /v1/host` shows. */
export interface HostFacts {
  hostname: string;
  accelerator: Accelerator;
  acceleratorReason: string;
  acceleratorForced: boolean;
  qemu: { binary: string; version: string; machines: number; devices: number };
  cpus: number;
  cpuModel: string;
  memory: { total: number; available: number };
  inventory: HostInventory;
}

export const PROBE_CACHE = process.env.CORRAL_PROBE_CACHE ?? '/run/corral/accel-probe.json';

export class HostService {
  private caps: Promise<QemuCapabilities>;
  private decision: Promise<AccelDecision> | null = null;

  /** `runAs`: the user guests' QEMUs run as; the KVM probe boots its test guest as that user too */
  constructor(private images: ImageStore, private force: Accelerator | undefined, private runAs?: RunAs) {
    this.caps = probeCapabilities();
    this.caps.catch(() => undefined);
  }

  limits(): HostLimits {
    const cpuList = readOnlineCpus();
    return { cpus: cpuList.length, memory: readMemInfo().total, cpuList };
  }

  capabilities(): Promise<QemuCapabilities> {
    return this.caps;
  }

  /** The accelerator decision; probed once, again after the tiny image appears if it was missing. */
  accelerator(): Promise<AccelDecision> {
    if (!this.decision) {
      this.decision = (async () => {
        const caps = await this.caps;
        const tiny = this.images.tryGet('tiny');
        const kernel = tiny?.kernel && tiny.initrd ? { kernel: tiny.kernel, initrd: tiny.initrd, cmdline: tiny.cmdline } : null;
        return decideAccelerator({ force: this.force, kernel, qemuVersion: caps.version, cacheFile: PROBE_CACHE, runAs: this.runAs });
      })();
      this.decision.then(
        (d) => { if (d.provisional) this.decision = null; },
        () => { this.decision = null; },
      );
    }
    return this.decision;
  }

  async show(): Promise<HostFacts> {
    const [caps, accel] = await Promise.all([this.caps, this.accelerator()]);
    const mem = readMemInfo();
    return {
      hostname: hostname(),
      accelerator: accel.accel,
      acceleratorReason: accel.reason,
      acceleratorForced: accel.forced,
      qemu: { binary: caps.binary, version: caps.version, machines: caps.machines.length, devices: caps.devices.length },
      cpus: readOnlineCpus().length,
      cpuModel: readCpuModel(),
      memory: { total: mem.total, available: mem.available },
      inventory: readHostInventory(),
    };
  }
}
