/**
 * Instance snapshots, pure: the snapshot's name, which disks it covers (and which refuse one), the record Corral keeps
 * of each, the check of that record against the internal snapshots the disks hold, and the QMP commands that take,
 * load and delete one. The service (src/services/snapshots.ts) does the I/O.
 *
 * A snapshot is an internal qcow2 snapshot of the same name in every disk of the instance (its root overlay and each
 * attached qcow2 volume), taken at one instant: a QMP `transaction` of blockdev-snapshot-internal-sync while QEMU
 * runs (crash-consistent; filesystem-consistent when the guest agent froze the filesystems first), QEMU's
 * `snapshot-save` job with the RAM and device state (the vmstate, stored in the root disk) when asked for memory, or
 * `qemu-img snapshot -c` on each disk of a stopped instance.
 */
import { CorralError } from './errors.js';
import { ROOT_DISK_ID, blockNodeId } from './device-ids.js';
import { isVhostUser, volumeIds, type DiskBus } from './disks.js';
import { validateName } from './names.js';

/** The key of the root disk in a snapshot's record (volumes go by their names, which are DNS labels: never this). */
export const ROOT_DISK_KEY = 'root';

/** The QEMU job ids of the snapshot jobs (one at a time per instance: the service holds the instance's lock). */
export const SNAPSHOT_JOB_IDS = { save: 'corral-snap-save', load: 'corral-snap-load', delete: 'corral-snap-delete' } as const;

/** A disk of the instance as a snapshot sees it. */
export interface SnapshotDisk {
  /** ROOT_DISK_KEY, or the volume's name */
  key: string;
  /** QEMU's block node (the format node the device reads) */
  node: string;
  path: string;
  format: 'qcow2' | 'raw';
  bus: DiskBus;
}

/** An internal snapshot as a qcow2 image holds it (qemu-img info's `snapshots`, query-named-block-nodes' image.snapshots). */
export interface DiskSnapshot {
  name: string;
  /** when it was taken, seconds and nanoseconds (QEMU's clock: the date-sec/date-nsec pair identifies it) */
  dateSec: number;
  dateNsec: number;
  vmStateSize: number;
}

/** One disk in a snapshot's record: what its internal snapshot was when Corral took it. */
export interface SnapshotDiskRecord {
  disk: string;
  dateSec: number;
  dateNsec: number;
  vmStateSize: number;
}

/**
 * What Corral records of a snapshot, in the instance's folder (snapshots.json). `phase` makes it crash-safe: a
 * record is written `creating` before any disk is touched and `ready` once every disk holds the snapshot; `deleting`
 * before the disks lose it. A daemon that finds `creating` or `deleting` at its start (it died in the middle)
 * deletes that snapshot from the disks that hold it and drops the record.
 */
export interface SnapshotRecord {
  name: string;
  createdAt: string;
  phase: 'creating' | 'ready' | 'deleting';
  /** RAM and device state saved too: a restore resumes the guest */
  memory: boolean;
  /** the guest agent froze the guest's filesystems for the snapshot (filesystem-consistent) */
  frozen: boolean;
  /** what the instance was when taken: running, paused or stopped */
  instanceState: 'running' | 'paused' | 'stopped';
  /** bytes of RAM and device state (0 without memory) */
  vmStateSize: number;
  disks: SnapshotDiskRecord[];
  /** vCPUs and memory (bytes) when taken: a memory snapshot is loaded only into the same machine */
  cpus: number;
  memoryBytes: number;
  /** the devices besides the disks whose state a memory snapshot holds (machineDevices); absent in older records */
  devices?: string[];
  /** each NIC's MAC when taken (machineMacs): a memory snapshot's device state holds it; absent in older records */
  macs?: Record<string, string>;
}

/** The file in the instance's folder that holds its snapshot records. */
export const SNAPSHOT_RECORDS_FILE = 'snapshots.json';

/** What snapshots.json holds. */
export interface SnapshotFile {
  snapshots: SnapshotRecord[];
}

/** A snapshot's name: a DNS label like every name in Corral (INVALID_SPEC on `snapshot` otherwise). */
export function validateSnapshotName(name: unknown): string {
  return validateName('snapshot', name);
}

/**
 * The disks a snapshot covers: the root overlay and every attached volume. A disk that cannot hold an internal
 * snapshot refuses the whole snapshot, naming it (UNSUPPORTED): a raw volume (no snapshot table), a vhost-user-blk
 * disk (its image is open in a qemu-storage-daemon, outside QEMU's transaction).
 */
export function snapshotDisks(instance: string, rootPath: string, volumes: ReadonlyArray<{ volume: string; bus: DiskBus; path: string; format: 'qcow2' | 'raw' }>): SnapshotDisk[] {
  const out: SnapshotDisk[] = [{ key: ROOT_DISK_KEY, node: blockNodeId({ id: ROOT_DISK_ID }), path: rootPath, format: 'qcow2', bus: 'virtio-blk' }];
  for (const v of volumes) {
    if (isVhostUser(v.bus)) {
      throw new CorralError('UNSUPPORTED', `instance "${instance}" cannot be snapshotted: volume "${v.volume}" is a ${v.bus} disk, whose image a qemu-storage-daemon holds outside QEMU's snapshot (detach it first)`, { disk: v.volume, reason: 'vhost-user' });
    }
    if (v.format !== 'qcow2') {
      throw new CorralError('UNSUPPORTED', `instance "${instance}" cannot be snapshotted: volume "${v.volume}" is raw, and raw images hold no internal snapshots (use a qcow2 volume, or detach it first)`, { disk: v.volume, reason: 'raw' });
    }
    out.push({ key: v.volume, node: volumeIds(v.volume).node, path: v.path, format: v.format, bus: v.bus });
  }
  return out;
}

/**
 * A memory snapshot saves every device's state: a device whose state lives outside QEMU (a passthrough PCI device)
 * cannot be saved. UNSUPPORTED naming the first one.
 */
export function assertMemorySnapshot(instance: string, hostdevs: ReadonlyArray<{ address: string }>): void {
  const first = hostdevs[0];
  if (first) {
    throw new CorralError('UNSUPPORTED', `instance "${instance}" cannot be snapshotted with its memory: passthrough device ${first.address} keeps its state in the hardware, which QEMU cannot save (take a disk-only snapshot)`, { device: first.address, reason: 'passthrough' });
  }
}

/** ALREADY_EXISTS when a record has the name, or a disk already holds an internal snapshot of that name. */
export function assertNameFree(instance: string, name: string, records: readonly SnapshotRecord[], onDisk: ReadonlyMap<string, readonly DiskSnapshot[]>): void {
  if (records.some((r) => r.name === name)) {
    throw new CorralError('ALREADY_EXISTS', `instance "${instance}" already has a snapshot "${name}"`, { name: instance, snapshot: name, field: 'snapshot' });
  }
  for (const [disk, list] of onDisk) {
    if (list.some((s) => s.name === name)) {
      throw new CorralError('ALREADY_EXISTS', `the ${diskWords(disk)} of instance "${instance}" already holds an internal snapshot "${name}" (made outside this instance's snapshots): pick another name`, { name: instance, snapshot: name, disk, field: 'snapshot' });
    }
  }
}

function diskWords(disk: string): string {
  return disk === ROOT_DISK_KEY ? 'root disk' : `volume "${disk}"`;
}

/** The record of each disk from what it holds after the snapshot was taken; INTERNAL if one lacks it. */
export function diskRecords(name: string, disks: readonly SnapshotDisk[], onDisk: ReadonlyMap<string, readonly DiskSnapshot[]>): SnapshotDiskRecord[] {
  return disks.map((d) => {
    const s = onDisk.get(d.key)?.find((x) => x.name === name);
    if (!s) throw new CorralError('INTERNAL', `snapshot "${name}" is not in the ${diskWords(d.key)} after it was taken`, { disk: d.key });
    return { disk: d.key, dateSec: s.dateSec, dateNsec: s.dateNsec, vmStateSize: s.vmStateSize };
  });
}

/**
 * What differs between a snapshot's record and the disks the instance has now (what each holds): a disk of the
 * snapshot that is no longer attached, a disk attached since, a disk that lacks the snapshot, or one whose
 * snapshot of that name is not the one Corral took (another date or vmstate size: deleted and made again behind
 * Corral's back). Empty when the snapshot can be restored.
 */
export function snapshotMismatches(rec: SnapshotRecord, current: readonly string[], onDisk: ReadonlyMap<string, readonly DiskSnapshot[]>): string[] {
  const out: string[] = [];
  const recorded = new Set(rec.disks.map((d) => d.disk));
  for (const d of rec.disks) {
    if (!current.includes(d.disk)) {
      out.push(`${diskWords(d.disk)} is no longer attached`);
      continue;
    }
    const s = onDisk.get(d.disk)?.find((x) => x.name === rec.name);
    if (!s) out.push(`the ${diskWords(d.disk)} no longer holds it`);
    else if (s.dateSec !== d.dateSec || s.dateNsec !== d.dateNsec) out.push(`the ${diskWords(d.disk)} holds a snapshot of that name taken at another time (${isoOf(s)}, not ${isoOf(d)})`);
    else if (s.vmStateSize !== d.vmStateSize) out.push(`the ${diskWords(d.disk)} holds it with ${s.vmStateSize} bytes of VM state, not ${d.vmStateSize}`);
  }
  for (const c of current) if (!recorded.has(c)) out.push(`${diskWords(c)} was attached after it was taken`);
  return out;
}

function isoOf(s: { dateSec: number; dateNsec: number }): string {
  return new Date(s.dateSec * 1000 + Math.floor(s.dateNsec / 1e6)).toISOString();
}

/** SNAPSHOT_MISMATCH listing what differs (nothing is restored). */
export function mismatchError(instance: string, name: string, why: readonly string[]): CorralError {
  return new CorralError('SNAPSHOT_MISMATCH', `snapshot "${name}" of instance "${instance}" cannot be restored: its disks changed behind Corral's back: ${why.join('; ')}; nothing was restored (delete the snapshot)`, {
    name: instance, snapshot: name, problems: why,
  });
}

/** What a machine's devices are besides its disks (these the snapshot's disk records check): NICs, passthrough, display, agent. */
export interface MachineShape {
  cpus: number;
  memory: number;
  nics: ReadonlyArray<{ id: string; model: string; mac?: string }>;
  hostdevs: ReadonlyArray<{ id: string }>;
  display?: string;
  agent?: boolean;
}

/** The devices whose state a memory snapshot saves besides the disks, as a list to compare. */
export function machineDevices(m: MachineShape): string[] {
  return [...m.nics.map((n) => `NIC ${n.id} (${n.model})`), ...m.hostdevs.map((h) => `host device ${h.id}`), `display ${m.display ?? 'none'}`, `agent channel ${m.agent === false ? 'off' : 'on'}`];
}

/** Each NIC's MAC by its id: what a memory snapshot's device state brings back with it. */
export function machineMacs(m: Pick<MachineShape, 'nics'>): Record<string, string> {
  return Object.fromEntries(m.nics.filter((n) => n.mac !== undefined).map((n) => [n.id, n.mac!.toLowerCase()]));
}

/**
 * A memory snapshot goes back into a QEMU of the same shape only: INVALID_STATE when the instance's vCPUs, memory or
 * devices (a NIC plugged or unplugged since, the display, the agent's channel) changed since: the saved device state
 * would not load, and QEMU would leave the guest unusable half-way. A NIC whose MAC changed (a copy or an import
 * gets new MACs) is refused too: the saved device state would give the guest the old MAC back, which the original
 * instance may still use on the same network.
 */
export function assertSameMachine(instance: string, rec: SnapshotRecord, now: MachineShape): void {
  if (!rec.memory) return;
  const diffs: string[] = [];
  if (now.cpus !== rec.cpus) diffs.push(`${now.cpus} vCPUs now, ${rec.cpus} then`);
  if (now.memory !== rec.memoryBytes) diffs.push(`${now.memory} bytes of memory now, ${rec.memoryBytes} then`);
  if (rec.devices !== undefined) {
    const then = new Set(rec.devices);
    const nowDevices = machineDevices(now);
    const added = nowDevices.filter((d) => !then.has(d));
    const gone = rec.devices.filter((d) => !nowDevices.includes(d));
    if (added.length > 0) diffs.push(`${added.join(', ')} now, not then`);
    if (gone.length > 0) diffs.push(`${gone.join(', ')} then, not now`);
  }
  const macsNow = machineMacs(now);
  for (const [id, then] of Object.entries(rec.macs ?? {})) {
    if (macsNow[id] !== undefined && macsNow[id] !== then) diffs.push(`NIC ${id} has MAC ${macsNow[id]} now, ${then} then (a copy or an import has new MACs, and the saved state would bring the old one back)`);
  }
  if (diffs.length > 0) {
    throw new CorralError('INVALID_STATE', `snapshot "${rec.name}" of instance "${instance}" holds the guest's memory of another machine (${diffs.join('; ')}): set the instance back first`, { snapshot: rec.name });
  }
}

// ---- QMP commands

/** One `transaction` taking an internal snapshot of every disk at the same instant (all or none). */
export function diskSnapshotTransaction(disks: readonly SnapshotDisk[], name: string): Array<{ type: string; data: Record<string, unknown> }> {
  return disks.map((d) => ({ type: 'blockdev-snapshot-internal-sync', data: { device: d.node, name } }));
}

/** snapshot-save: the RAM and device state into the root disk, every disk's snapshot with it. */
export function snapshotSaveArgs(disks: readonly SnapshotDisk[], name: string): Record<string, unknown> {
  return { 'job-id': SNAPSHOT_JOB_IDS.save, tag: name, vmstate: disks[0]!.node, devices: disks.map((d) => d.node) };
}

/** snapshot-load: every disk back to the snapshot and the saved state loaded (the VM stopped meanwhile). */
export function snapshotLoadArgs(disks: readonly SnapshotDisk[], name: string): Record<string, unknown> {
  return { 'job-id': SNAPSHOT_JOB_IDS.load, tag: name, vmstate: disks[0]!.node, devices: disks.map((d) => d.node) };
}

/** snapshot-delete: the snapshot out of every disk that is named (with or without a vmstate). */
export function snapshotDeleteArgs(nodes: readonly string[], name: string): Record<string, unknown> {
  return { 'job-id': SNAPSHOT_JOB_IDS.delete, tag: name, devices: [...nodes] };
}

/** The snapshots in qemu-img info's or QMP's image info (`snapshots`: id, name, vm-state-size, date-sec, date-nsec). */
export function parseDiskSnapshots(list: unknown): DiskSnapshot[] {
  if (!Array.isArray(list)) return [];
  return list.flatMap((s: Record<string, unknown>) => {
    if (typeof s?.name !== 'string') return [];
    const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
    return [{ name: s.name, dateSec: n(s['date-sec']), dateNsec: n(s['date-nsec']), vmStateSize: n(s['vm-state-size']) }];
  });
}

/** A snapshot as the API shows it. */
export interface SnapshotView {
  name: string;
  createdAt: string;
  memory: boolean;
  frozen: boolean;
  instanceState: SnapshotRecord['instanceState'];
  vmStateSize: number;
  disks: string[];
}

export function snapshotView(r: SnapshotRecord): SnapshotView {
  return { name: r.name, createdAt: r.createdAt, memory: r.memory, frozen: r.frozen, instanceState: r.instanceState, vmStateSize: r.vmStateSize, disks: r.disks.map((d) => d.disk) };
}

/** Read snapshots.json's text: the records, or CORRUPT_RECORD. */
export function parseSnapshotFile(instance: string, text: string): SnapshotRecord[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CorralError('CORRUPT_RECORD', `instance "${instance}": its snapshots record is not JSON (${(e as Error).message})`, { name: instance });
  }
  const list = (raw as SnapshotFile | null)?.snapshots;
  if (!Array.isArray(list) || !list.every((r) => typeof r?.name === 'string' && Array.isArray(r.disks) && ['creating', 'ready', 'deleting'].includes(r.phase))) {
    throw new CorralError('CORRUPT_RECORD', `instance "${instance}": its snapshots record is not one Corral wrote`, { name: instance });
  }
  return list;
}
