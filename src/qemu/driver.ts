/**
 * The QEMU back end of the hypervisor seam (src/vm/driver.ts): a launch plan becomes QEMU's argv (argv.ts),
 * QEMU is spawned detached (launch.ts) and watched (vm.ts); a running QEMU is recognised by its /proc
 * cmdline (its -uuid) and start time (proc.ts); the kernel's word on a dead one comes from /dev/kmsg. Each QEMU
 * gets a console keeper (console-keeper.ts), which writes its console log and outlives the daemon as QEMU does.
 */
import { closeSync } from 'node:fs';
import { ensureGuestFence } from '../network/guest-fence.js';
import { canRaiseMemlock, type RunAs } from '../host/run-as.js';
import { kernelDeathNote, readKernelLog } from '../host/kmsg.js';
import type { Vm, VmDriver, VmProcess, VmSockets } from '../vm/driver.js';
import { buildArgv, type LaunchPlan } from './argv.js';
import { openConsolePipe, startConsoleKeeper } from './console-keeper.js';
import { QEMU_BINARY, launchQemu } from './launch.js';
import { findQemusByUuid, isQemuOf, processStartTicks } from './proc.js';
import { QmpClient } from './qmp.js';
import { qmpToCorral } from './qmp-errors.js';
import { QemuVm } from './vm.js';

export interface QemuDriverOptions {
  /** QEMU's version as the probe found it */
  version: () => string;
  binary?: string;
  /** how long a new QEMU has to greet on QMP (default 30 s) */
  launchTimeoutMs?: number;
  /**
   * The unprivileged user QEMU runs as (src/host/run-as.ts); before each launch the guest fence is made to hold
   * for its group (src/network/guest-fence.ts).
   */
  runAs: RunAs;
  /** the most bytes of console.log, and of console.log.1, that each VM's console keeper keeps (console-keeper.ts) */
  consoleLogLimit: number;
  log?: { warn(o: object, m?: string): void };
}

/**
 * What QEMU may lock in memory: with VFIO devices all guest memory is pinned for DMA; libvirt's rule, the most
 * the guest can have plus 1 GiB for QEMU's own. Without them, the default limit (nothing to pin). Pure.
 */
export function vfioMemlock(plan: Pick<LaunchPlan, 'hostdevs' | 'memory' | 'maxMemory'>): number | undefined {
  if (!plan.hostdevs || plan.hostdevs.length === 0) return undefined;
  return (plan.maxMemory ?? plan.memory) + 1024 ** 3;
}

export class QemuDriver implements VmDriver {
  readonly name = 'qemu';

  constructor(private readonly o: QemuDriverOptions) {}

  version(): string {
    return this.o.version();
  }

  async launch(plan: LaunchPlan, files: { stderr: string }): Promise<Vm> {
    // every QEMU, not only those with a user NIC now: one can be hot-plugged later
    await ensureGuestFence(this.o.runAs.gid);
    let memlock = vfioMemlock(plan);
    if (memlock !== undefined && !(await canRaiseMemlock(memlock))) {
      this.o.log?.warn({ memlock }, 'cannot raise RLIMIT_MEMLOCK for QEMU (no CAP_SYS_RESOURCE in the initial user namespace: a container?); VFIO will fail to pin guest memory');
      memlock = undefined;
    }
    const argv = buildArgv(plan);
    // the console log: QEMU writes it into a pipe (fd 3), its keeper reads the other end; the daemon keeps neither
    const pipe = await openConsolePipe(`${plan.paths.consoleLog}.pipe`);
    try {
      startConsoleKeeper(pipe.read, plan.paths.consoleLog, this.o.consoleLogLimit, this.o.runAs, (o, m) => this.o.log?.warn({ instance: plan.name, ...o }, m));
    } catch (e) {
      closeSync(pipe.write);
      throw e;
    } finally {
      closeSync(pipe.read);
    }
    // launchQemu closes the write end once QEMU has it, whether or not QEMU starts
    const l = await launchQemu(argv, { qmp: plan.paths.qmp, stderr: files.stderr }, this.o.launchTimeoutMs, this.o.binary ?? QEMU_BINARY, this.o.runAs, memlock, [pipe.write]);
    return new QemuVm(l.pid, l.startTicks, l.qmp, l.exit);
  }

  find(uuid: string, recorded: VmProcess | null, search: boolean): VmProcess | null {
    if (recorded && isQemuOf(recorded.pid, uuid, recorded.startTicks)) return recorded;
    if (!search) return null;
    const pid = findQemusByUuid(uuid)[0];
    return pid === undefined ? null : { pid, startTicks: processStartTicks(pid) };
  }

  async adopt(proc: VmProcess, sockets: VmSockets): Promise<Vm> {
    let qmp: QmpClient;
    try {
      qmp = await QmpClient.connect(sockets.qmp, { timeoutMs: 10_000, retry: true });
    } catch (e) {
      throw qmpToCorral(e, 'connect');
    }
    return new QemuVm(proc.pid, proc.startTicks, qmp);
  }

  killProcess(uuid: string, proc: VmProcess): void {
    if (!isQemuOf(proc.pid, uuid, proc.startTicks)) return;
    try {
      process.kill(proc.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }

  deathNote(proc: VmProcess): string | null {
    // the kernel log's times are microseconds since boot; USER_HZ is 100 on Linux
    return kernelDeathNote(readKernelLog(), proc.pid, proc.startTicks === null ? 0 : (proc.startTicks / 100) * 1e6);
  }
}
