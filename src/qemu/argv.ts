/**
 * Instance launch plan -> qemu-system-x86_64 argv. Pure. Devices are JSON objects (QEMU parses JSON for
 * -blockdev, -device, -netdev and -object), so no user text is ever joined into a comma-separated option.
 */
import { AGENT_CHARDEV_ID, DISPLAY_DEVICE_ID, AGENT_PORT_ID, AGENT_PORT_NAME, AGENT_SERIAL_ID, BALLOON_ID, SEED_DISK_ID, HOTPLUG_RAM_BACKEND_ID, HOTPLUG_RAM_DEVICE_ID, RAM_BACKEND_ID } from '../core/device-ids.js';
import { DEFAULT_BLOCK_IO, disksArgv, type BlockIo, type PlanDisk } from './argv-disks.js';
import { chardevId, netdevArgs, nicDevice, type PlanNic } from './argv-nics.js';
import type { Accelerator, Firmware } from '../core/spec.js';
import { assertSafeOptionPath } from './option-path.js';
import { CorralError } from '../core/errors.js';

export interface LaunchPlan {
  uuid: string;
  name: string;
  accel: Accelerator;
  /** vCPUs at boot */
  cpus: number;
  /** vCPUs the guest can grow to (hotplug), and how they are laid out */
  maxCpus: number;
  topology: { sockets: number; cores: number; threads: number };
  /** a QEMU CPU model: host, max, or a named model */
  cpuModel: string;
  /** bytes at boot */
  memory: number;
  /** bytes the guest can grow to with virtio-mem, or null */
  maxMemory: number | null;
  memoryBacking: { hugepages: number | null; prealloc: boolean; share: boolean };
  /** virtio-balloon with free page reporting and deflate-on-oom */
  balloon: boolean;
  machine: 'pc' | 'q35';
  firmware: { kind: Firmware; code?: string; vars?: string };
  /** Direct kernel boot (images of kind "kernel"); absent means firmware boots the disk. */
  kernel?: { kernel: string; initrd?: string; cmdline: string };
  /** The root disk, then attached volumes (node: the block node name, default `<id>-fmt`; serial: what the guest sees). */
  disks: PlanDisk[];
  /** how image files are opened (O_DIRECT, AIO engine); absent: page cache and thread-pool AIO */
  blockIo?: BlockIo;
  nics: PlanNic[];
  /** host PCI devices passed through with vfio-pci (whole devices, or SR-IOV VFs with their MAC set on the PF) */
  hostdevs?: Array<{ id: string; address: string; kind: 'passthrough' | 'sriov-vf'; mac?: string; pf?: string }>;
  /**
   * consoleLog: what the console keeper writes (QEMU itself writes the log to a pipe: CONSOLE_LOG_FD); agent: the
   * guest agent's socket (QEMU serves it, the daemon connects), absent for an instance without the agent's channel;
   * vnc: the graphical console's VNC socket (QEMU serves it, the API proxies it), absent for an instance without a display
   */
  paths: { qmp: string; console: string; consoleLog: string; pidfile: string; agent?: string; vnc?: string };
  /** cloud-init's NoCloud seed image (ISO 9660, label cidata): a read-only virtio-blk disk, the last PCI device */
  seed?: string;
  sandbox: boolean;
  /**
   * the incoming side of a live migration: QEMU starts paused (-S), waiting for `migrate-incoming` (-incoming
   * defer), with the very devices the source has (same plan); it runs once told to (`cont`)
   */
  incoming?: boolean;
  /** QEMU starts with its vCPUs stopped (-S): a restore loads a memory snapshot into it before it runs */
  paused?: boolean;
}

/**
 * The serial console's log: QEMU writes it to a pipe it gets as this fd, in this fd set (`logfile=/dev/fdset/N`);
 * the console keeper (console-keeper.ts) reads the other end and writes console.log.
 */
export const CONSOLE_LOG_FD = 3;
export const CONSOLE_LOG_FDSET = 1;

function json(o: Record<string, unknown>): string {
  return JSON.stringify(o);
}

export { assertSafeOptionPath };

export function buildArgv(plan: LaunchPlan): string[] {
  const a: string[] = [];
  const mib = Math.floor(plan.memory / (1024 * 1024));
  a.push('-name', `guest=${plan.name},debug-threads=on`);
  a.push('-uuid', plan.uuid);
  a.push('-nodefaults', '-no-user-config');
  a.push('-machine', `${plan.machine},accel=${plan.accel},memory-backend=mem0`);
  a.push('-cpu', plan.cpuModel);
  const t = plan.topology;
  a.push('-smp', `${plan.cpus},sockets=${t.sockets},cores=${t.cores},threads=${t.threads},maxcpus=${plan.maxCpus}`);
  a.push('-m', plan.maxMemory === null ? `${mib}M` : `${mib}M,maxmem=${Math.floor(plan.maxMemory / (1024 * 1024))}M`);
  a.push('-object', json(memoryBackend(RAM_BACKEND_ID, mib * 1024 * 1024, plan.memoryBacking)));
  a.push('-display', 'none', '-vga', 'none');
  if (plan.sandbox) a.push('-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  a.push('-qmp', `unix:${assertSafeOptionPath(plan.paths.qmp)},server=on,wait=off`);
  a.push('-add-fd', `fd=${CONSOLE_LOG_FD},set=${CONSOLE_LOG_FDSET}`);
  // logappend=on: without it QEMU asks for O_TRUNC, which it refuses on a descriptor from an fd set
  a.push('-chardev', `socket,id=serial0,path=${assertSafeOptionPath(plan.paths.console)},server=on,wait=off,logfile=/dev/fdset/${CONSOLE_LOG_FDSET},logappend=on`);
  a.push('-serial', 'chardev:serial0');
  if (plan.firmware.kind === 'uefi') {
    if (!plan.firmware.code || !plan.firmware.vars) throw new CorralError('INTERNAL', 'the launch plan has UEFI firmware without its code and vars files (the plan names both for UEFI)');
    a.push('-blockdev', json({ driver: 'file', 'node-name': 'fw-code', filename: plan.firmware.code, 'read-only': true }));
    a.push('-blockdev', json({ driver: 'file', 'node-name': 'fw-vars', filename: plan.firmware.vars }));
    a.push('-machine', 'pflash0=fw-code,pflash1=fw-vars');
  }
  if (plan.kernel) {
    a.push('-kernel', assertSafeOptionPath(plan.kernel.kernel));
    if (plan.kernel.initrd) a.push('-initrd', assertSafeOptionPath(plan.kernel.initrd));
    a.push('-append', plan.kernel.cmdline);
  }
  a.push(...disksArgv(plan.disks, plan.blockIo ?? DEFAULT_BLOCK_IO, plan.cpus));
  for (const n of plan.nics) {
    if (n.backend.type === 'vhost-user') a.push('-chardev', `socket,id=${chardevId(n)},path=${assertSafeOptionPath(n.backend.socket)}`);
    a.push('-netdev', json(netdevArgs(n)));
    a.push('-device', json(nicDevice(n)));
  }
  for (const h of plan.hostdevs ?? []) a.push('-device', json(vfioDevice(h.address, h.id)));
  if (plan.maxMemory !== null) {
    // Hotpluggable memory: a virtio-mem device backed by its own region, plugged with QMP qom-set requested-size.
    const hot = plan.maxMemory - mib * 1024 * 1024;
    a.push('-object', json(memoryBackend(HOTPLUG_RAM_BACKEND_ID, hot, { ...plan.memoryBacking, prealloc: false })));
    a.push('-device', json({ driver: 'virtio-mem-pci', id: HOTPLUG_RAM_DEVICE_ID, memdev: HOTPLUG_RAM_BACKEND_ID, 'requested-size': 0, 'block-size': Math.max(2 * 1024 * 1024, plan.memoryBacking.hugepages ?? 0) }));
  }
  if (plan.balloon) {
    a.push('-device', json({ driver: 'virtio-balloon-pci', id: BALLOON_ID, 'free-page-reporting': true, 'deflate-on-oom': true }));
  }
  a.push('-device', json({ driver: 'pvpanic-pci', id: 'panic0' }));
  a.push('-device', json({ driver: 'virtio-rng-pci', id: 'rng0' }));
  if (plan.paths.agent !== undefined) a.push(...agentArgv(plan.paths.agent));
  if (plan.paths.vnc !== undefined) a.push(...displayArgv(plan.paths.vnc));
  if (plan.seed !== undefined) a.push(...disksArgv([seedDisk(plan.seed)], plan.blockIo ?? DEFAULT_BLOCK_IO, 1));
  a.push('-pidfile', assertSafeOptionPath(plan.paths.pidfile));
  if (plan.incoming) a.push('-S', '-incoming', 'defer');
  else if (plan.paused) a.push('-S');
  return a;
}

/**
 * The guest agent's channel: a virtio-serial controller with one port named org.qemu.guest_agent.0, whose host end
 * is a unix socket QEMU listens on. Last of the PCI devices, so that adding it to an instance moves no other device.
 */
export function agentArgv(socket: string): string[] {
  return [
    '-chardev', `socket,id=${AGENT_CHARDEV_ID},path=${assertSafeOptionPath(socket)},server=on,wait=off`,
    '-device', json({ driver: 'virtio-serial-pci', id: AGENT_SERIAL_ID }),
    '-device', json({ driver: 'virtserialport', bus: `${AGENT_SERIAL_ID}.0`, chardev: AGENT_CHARDEV_ID, name: AGENT_PORT_NAME, id: AGENT_PORT_ID }),
  ];
}

/**
 * A display: QEMU's standard VGA (what `-vga std` makes: VGA text mode and the VESA/Bochs linear framebuffer, so
 * SeaBIOS, a kernel's vgacon, OVMF's GOP and a bochs-drm guest all draw on it), and its screen served over VNC on a
 * unix socket in the runtime dir. Never a TCP port: the API proxies the socket behind its own authentication. After
 * every other PCI device (the agent's too; only the cloud-init seed comes later), so that giving an instance a display
 * moves no other device's address.
 */
export function displayArgv(socket: string): string[] {
  return ['-device', json({ driver: 'VGA', id: DISPLAY_DEVICE_ID }), '-vnc', `unix:${assertSafeOptionPath(socket)}`];
}

/**
 * The cloud-init seed as a disk: raw, read-only (QEMU opens the file read-only; the guest sees a read-only
 * virtio-blk disk whose serial is "cidata"). After every other PCI device (the agent's channel and the display too),
 * so that no device of the instance moves because of it.
 */
export function seedDisk(path: string): PlanDisk {
  return { id: SEED_DISK_ID, path, format: 'raw', bus: 'virtio-blk', readonly: true, serial: 'cidata' };
}

/** A host PCI device for the guest: vfio-pci with the device's address (checked: DDDD:BB:DD.F). */
export function vfioDevice(address: string, id: string): Record<string, unknown> {
  if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/.test(address)) throw new CorralError('INTERNAL', `the launch plan's host device ${JSON.stringify(address)} is not a PCI address (DDDD:BB:DD.F; addresses are checked when attached)`, { address });
  return { driver: 'vfio-pci', host: address, id };
}

/**
 * Guest RAM: anonymous memory allocated on demand by default; memfd when it must be shared (vhost-user) or
 * backed by hugepages (memfd hugetlb needs no hugetlbfs mount); prealloc touches every page at start.
 */
export function memoryBackend(id: string, size: number, b: LaunchPlan['memoryBacking']): Record<string, unknown> {
  const o: Record<string, unknown> = b.hugepages !== null || b.share
    ? { 'qom-type': 'memory-backend-memfd', id, size, share: b.share }
    : { 'qom-type': 'memory-backend-ram', id, size };
  if (b.hugepages !== null) Object.assign(o, { hugetlb: true, hugetlbsize: b.hugepages });
  if (b.prealloc) o.prealloc = true;
  return o;
}
