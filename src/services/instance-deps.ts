/** What the instance service is built from (the composition root, src/daemon/main.ts, provides it). */
import type { SharedPool } from './shared-pool.js';
import type { Accelerator, HostLimits } from '../core/spec.js';
import type { HostCapacityInput, PoolConfig } from '../core/pool.js';
import type { BlockIo } from '../qemu/argv-disks.js';
import type { ImageStore } from '../storage/images.js';
import type { Store } from '../store/store.js';
import type { VmDriver } from '../vm/driver.js';
import type { EventBus } from './events.js';

export interface InstanceDeps {
  dataDir: string;
  store: Store;
  images: Pick<ImageStore, 'get' | 'claim'>;
  events: EventBus;
  host: HostLimits;
  /** The accelerator chosen by the probe (or forced). */
  accelerator: () => Promise<Accelerator>;
  /** The resource pool: host capacity and its ratios and reserve. */
  pool: { host: HostCapacityInput; config: PoolConfig };
  /** The hypervisor: every VM process is launched, adopted, watched and killed through it. */
  driver: VmDriver;
  /**
   * Makes an instance's root disk over its image (default: a qcow2 overlay by qemu-img, src/qemu/img.ts). A simulated
   * host (src/daemon/sim-graph.ts), whose VMs never read a disk, makes an empty file instead.
   */
  overlay?: (path: string, backingPath: string, backingFormat: 'qcow2' | 'raw', sizeBytes: number | null) => Promise<void>;
  /** How QEMU opens image files here (probed at daemon start); default page cache + threads. */
  blockIo?: BlockIo;
  log: { info(o: object, m?: string): void; warn(o: object, m?: string): void };
  /** the shared storage pool (--shared-pool): root disks of `pool: shared` instances */
  sharedPool?: SharedPool;
}
