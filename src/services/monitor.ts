/**
 * Watches one running QEMU: its QMP event stream and its process. Reports each QMP event and, exactly once,
 * the process's exit (noticed through the QMP socket closing, backed by a /proc poll).
 */
import type { ExitStatus } from '../qemu/launch.js';
import { QmpClient, type QmpEvent } from '../qemu/qmp.js';
import { isAlive, processStartTicks } from '../qemu/proc.js';

export interface MonitorHandlers {
  onEvent(ev: QmpEvent): void;
  /** guestShutdown: QEMU reported the guest's own power-off; expected: why the daemon itself ended it, if it did */
  onExit(info: { guestShutdown: boolean; shutdownReason: string | null; expected: string | null; crash: string | null; status: ExitStatus | null }): void;
}

const POLL_MS = 500;

export class VmMonitor {
  guestShutdown = false;
  /** QMP SHUTDOWN's reason: guest-shutdown (the guest powered off), host-signal (QEMU got SIGTERM/SIGINT), ... */
  shutdownReason: string | null = null;
  /** Set by the daemon before it kills QEMU, so that the exit is not taken for a crash. */
  expectedExit: string | null = null;
  /** Set by the daemon before it kills a QEMU whose guest failed (a kernel panic): the exit is a crash. */
  crashReason: string | null = null;
  private exitedFlag = false;
  private exitWaiters: Array<() => void> = [];
  private poll: NodeJS.Timeout;
  private detached = false;
  private reported = false;
  /** The exit status from the parent's side, for a QEMU this daemon started (not for an adopted one). */
  private status: ExitStatus | null = null;

  private constructor(readonly pid: number, readonly startTicks: number | null, public qmp: QmpClient, private h: MonitorHandlers, private exit?: Promise<ExitStatus>) {
    void exit?.then((st) => { this.status = st; });
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
  static watch(pid: number, startTicks: number | null, qmp: QmpClient, h: MonitorHandlers, exit?: Promise<ExitStatus>): VmMonitor {
    return new VmMonitor(pid, startTicks, qmp, h, exit);
  }

  private wire(qmp: QmpClient): void {
    qmp.on('event', (ev: QmpEvent) => {
      if (ev.event === 'SHUTDOWN') {
        this.guestShutdown = true;
        const why = (ev.data as { reason?: unknown } | undefined)?.reason;
        this.shutdownReason = typeof why === 'string' ? why : null;
      }
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

  /** False once the exit has been reported (state moved, exit hooks started). */
  get alive(): boolean {
    return !this.reported;
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
    // /proc may show the process gone (a zombie) a moment before the parent reaps it and learns its status.
    if (this.exit && !this.status) {
      const late = setTimeout(() => this.report(), 1000);
      void this.exit.then(() => { clearTimeout(late); this.report(); });
    } else {
      this.report();
    }
  }


  private report(): void {
    if (this.reported || this.detached) return;
    this.reported = true;
    this.h.onExit({ guestShutdown: this.guestShutdown, shutdownReason: this.shutdownReason, expected: this.expectedExit, crash: this.crashReason, status: this.status });
    for (const w of this.exitWaiters.splice(0)) w();
  }

  /** Resolves true when the process is gone, false after timeoutMs. */
  waitExit(timeoutMs: number): Promise<boolean> {
    if (this.reported) return Promise.resolve(true);
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
