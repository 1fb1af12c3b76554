/**
 * Watches one running QEMU: its QMP event stream and its process. Reports each QMP event and, exactly once,
 * the process's exit (noticed through the QMP socket closing, backed by a /proc poll).
 */
import { QmpClient, type QmpEvent } from '../qemu/qmp.js';
import { isAlive, processStartTicks } from '../qemu/proc.js';

export interface MonitorHandlers {
  onEvent(ev: QmpEvent): void;
  /** guestShutdown: QEMU reported the guest's own power-off; expected: why the daemon itself ended it, if it did */
  onExit(info: { guestShutdown: boolean; expected: string | null; crash: string | null }): void;
}

const POLL_MS = 500;

export class VmMonitor {
  guestShutdown = false;
  /** Set by the daemon before it kills QEMU, so that the exit is not taken for a crash. */
  expectedExit: string | null = null;
  /** Set by the daemon before it kills a QEMU whose guest failed (a kernel panic): the exit is a crash. */
  crashReason: string | null = null;
  private exitedFlag = false;
  private exitWaiters: Array<() => void> = [];
  private poll: NodeJS.Timeout;
  private detached = false;

  private constructor(readonly pid: number, readonly startTicks: number | null, public qmp: QmpClient, private h: MonitorHandlers) {
    this.poll = setInterval(() => this.check(), POLL_MS);
    this.poll.unref();
    this.wire(qmp);
  }

  /** Adopt a QEMU that is already running: connect to its QMP socket. */
  static async attach(pid: number, startTicks: number | null, qmpPath: string, h: MonitorHandlers): Promise<VmMonitor> {
    const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 10_000, retry: true });
    return new VmMonitor(pid, startTicks, qmp, h);
  }

  /** Watch a QEMU we just launched, over the QMP connection the launch opened. */
  static watch(pid: number, startTicks: number | null, qmp: QmpClient, h: MonitorHandlers): VmMonitor {
    return new VmMonitor(pid, startTicks, qmp, h);
  }

  private wire(qmp: QmpClient): void {
    qmp.on('event', (ev: QmpEvent) => {
      if (ev.event === 'SHUTDOWN') this.guestShutdown = true;
      this.h.onEvent(ev);
    });
    qmp.on('close', () => {
      if (this.detached) return;
      // QEMU closes its socket just before it exits: look closely for a moment, then keep the slow poll.
      let tries = 0;
      const fast = setInterval(() => {
        this.check();
        if (this.exitedFlag || ++tries > 40) clearInterval(fast);
      }, 25);
    });
  }

  get alive(): boolean {
    return !this.exitedFlag;
  }

  private gone(): boolean {
    if (!isAlive(this.pid)) return true;
    return this.startTicks !== null && processStartTicks(this.pid) !== this.startTicks;
  }

  private check(): void {
    if (this.exitedFlag || this.detached) return;
    if (!this.gone()) return;
    this.exitedFlag = true;
    clearInterval(this.poll);
    this.qmp.close();
    this.h.onExit({ guestShutdown: this.guestShutdown, expected: this.expectedExit, crash: this.crashReason });
    for (const w of this.exitWaiters.splice(0)) w();
  }

  /** Resolves true when the process is gone, false after timeoutMs. */
  waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exitedFlag) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.exitWaiters = this.exitWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        resolve(true);
      };
      this.exitWaiters.push(done);
    });
  }

  /** Stop watching without touching QEMU (daemon shutdown: QEMU lives on). */
  detach(): void {
    this.detached = true;
    clearInterval(this.poll);
    this.qmp.close();
  }
}
