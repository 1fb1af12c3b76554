/**
 * One running QEMU as the services see it (a Vm of src/vm/driver.ts): its typed QMP operations, its event
 * stream and, exactly once, its exit. The exit is noticed through the QMP socket closing, backed by a /proc
 * poll; for a QEMU this daemon started, the parent's exit status is waited for (at most a second).
 */
import type { Vm, VmEvent, VmExit } from '../vm/driver.js';
import type { ExitStatus } from './launch.js';
import { isAlive, processStartTicks } from './proc.js';
import type { QmpClient, QmpEvent } from './qmp.js';
import { QmpControl } from './vm-control.js';

const POLL_MS = 500;

export class QemuVm extends QmpControl implements Vm {
  readonly exited: Promise<VmExit>;
  private resolveExit!: (e: VmExit) => void;
  private shutdown: string | null = null;
  private gone = false;
  private detached = false;
  private exitStatus: ExitStatus | null = null;
  private readonly poll: NodeJS.Timeout;

  constructor(readonly pid: number, readonly startTicks: number | null, qmp: QmpClient, private readonly parentExit?: Promise<ExitStatus>) {
    super(qmp);
    this.exited = new Promise((resolve) => { this.resolveExit = resolve; });
    void parentExit?.then((st) => { this.exitStatus = st; });
    this.poll = setInterval(() => this.check(), POLL_MS);
    this.poll.unref();
    qmp.on('event', (ev: QmpEvent) => {
      if (ev.event !== 'SHUTDOWN') return;
      const why = ev.data.reason;
      this.shutdown = typeof why === 'string' ? why : 'unknown';
    });
    qmp.on('close', () => {
      if (this.detached) return;
      // QEMU closes its socket just before it exits: look closely for a moment, then keep the slow poll.
      let tries = 0;
      const fast = setInterval(() => {
        this.check();
        if (this.gone || ++tries > 40) clearInterval(fast);
      }, 25);
    });
  }

  onEvent(fn: (ev: VmEvent) => void): () => void {
    const h = (ev: QmpEvent): void => fn({ event: ev.event, data: ev.data });
    this.qmp.on('event', h);
    return () => { this.qmp.off('event', h); };
  }

  kill(): void {
    if (this.gone) return;
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }

  detach(): void {
    this.detached = true;
    clearInterval(this.poll);
    this.qmp.close();
  }

  private processGone(): boolean {
    if (!isAlive(this.pid)) return true;
    return this.startTicks !== null && processStartTicks(this.pid) !== this.startTicks;
  }

  private check(): void {
    if (this.gone || this.detached || !this.processGone()) return;
    this.gone = true;
    clearInterval(this.poll);
    this.qmp.close();
    // /proc may show the process gone (a zombie) a moment before the parent reaps it and learns its status.
    if (this.parentExit && !this.exitStatus) {
      const late = setTimeout(() => this.report(), 1000);
      void this.parentExit.then(() => { clearTimeout(late); this.report(); });
    } else {
      this.report();
    }
  }

  private report(): void {
    if (this.detached) return;
    this.resolveExit({ status: this.exitStatus, shutdown: this.shutdown });
  }
}
