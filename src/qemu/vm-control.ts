/**
 * VmControl over QMP: each typed operation of the hypervisor seam (src/vm/driver.ts) is one QMP command, and
 * every failure becomes a coded Corral error in one place (qmpToCorral).
 */
import type { BlockStatsEntry, HotpluggableCpu, JobInfo, MigrationInfo, VcpuInfo, VmControl, VmRunStatus } from '../vm/driver.js';
import type { QmpClient } from './qmp.js';
import { qmpToCorral } from './qmp-errors.js';

type QomEntry = { name: string; type: string };

export class QmpControl implements VmControl {
  constructor(protected readonly qmp: QmpClient) {}

  /** Run one QMP command; a QMP failure rejects with a coded CorralError. */
  protected async call<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    try {
      return await this.qmp.execute<T>(command, args);
    } catch (e) {
      throw qmpToCorral(e, command);
    }
  }

  private async children(path: string): Promise<string[]> {
    const list = await this.call<QomEntry[]>('qom-list', { path });
    return list.filter((p) => p.type.startsWith('child<')).map((p) => p.name);
  }

  private hmp(commandLine: string): Promise<string> {
    return this.call<string>('human-monitor-command', { 'command-line': commandLine });
  }

  status(): Promise<VmRunStatus> { return this.call<VmRunStatus>('query-status'); }
  async pause(): Promise<void> { await this.call('stop'); }
  async resume(): Promise<void> { await this.call('cont'); }
  async powerdown(): Promise<void> { await this.call('system_powerdown'); }

  vcpus(): Promise<VcpuInfo[]> { return this.call<VcpuInfo[]>('query-cpus-fast'); }
  hotpluggableCpus(): Promise<HotpluggableCpu[]> { return this.call<HotpluggableCpu[]>('query-hotpluggable-cpus'); }
  vcpuStats(): Promise<unknown> { return this.call('query-stats', { target: 'vcpu', providers: [{ provider: 'kvm' }] }); }

  async deviceAdd(args: Record<string, unknown>): Promise<void> { await this.call('device_add', args); }
  async deviceDel(id: string): Promise<void> { await this.call('device_del', { id }); }
  peripherals(): Promise<string[]> { return this.children('/machine/peripheral'); }
  objects(): Promise<string[]> { return this.children('/objects'); }
  async objectAdd(args: Record<string, unknown>): Promise<void> { await this.call('object-add', args); }
  async objectDel(id: string): Promise<void> { await this.call('object-del', { id }); }
  propertyGet<T = unknown>(path: string, property: string): Promise<T> { return this.call<T>('qom-get', { path, property }); }
  async propertySet(path: string, property: string, value: unknown): Promise<void> { await this.call('qom-set', { path, property, value }); }

  async blockdevAdd(args: Record<string, unknown>): Promise<void> { await this.call('blockdev-add', args); }
  async blockdevDel(node: string): Promise<void> { await this.call('blockdev-del', { 'node-name': node }); }
  async blockResize(node: string, bytes: number): Promise<void> { await this.call('block_resize', { 'node-name': node, size: bytes }); }
  async chardevAdd(args: Record<string, unknown>): Promise<void> { await this.call('chardev-add', args); }
  async chardevRemove(id: string): Promise<void> { await this.call('chardev-remove', { id }); }
  async netdevAdd(args: Record<string, unknown>): Promise<void> { await this.call('netdev_add', args); }
  async netdevDel(id: string): Promise<void> { await this.call('netdev_del', { id }); }

  async memorySize(): Promise<{ base: number | null; plugged: number | null }> {
    const r = await this.call<{ 'base-memory'?: number; 'plugged-memory'?: number }>('query-memory-size-summary');
    return { base: r['base-memory'] ?? null, plugged: r['plugged-memory'] ?? null };
  }
  async balloonSize(): Promise<number> { return (await this.call<{ actual: number }>('query-balloon')).actual; }
  blockStats(): Promise<BlockStatsEntry[]> { return this.call<BlockStatsEntry[]>('query-blockstats'); }
  async balloon(bytes: number): Promise<void> { await this.call('balloon', { value: bytes }); }
  async memdevs(): Promise<string[]> {
    const list = await this.call<Array<{ id?: string }>>('query-memdev');
    return list.map((m) => m.id).filter((id): id is string => typeof id === 'string');
  }
  memoryTree(): Promise<string> { return this.hmp('info mtree -f'); }
  gpaToHva(gpa: number): Promise<string> { return this.hmp(`gpa2hva 0x${gpa.toString(16)}`); }

  async migrateIncoming(uri: string): Promise<void> { await this.call('migrate-incoming', { uri }); }
  async migrateSetCapabilities(caps: Record<string, boolean>): Promise<void> {
    await this.call('migrate-set-capabilities', { capabilities: Object.entries(caps).map(([capability, state]) => ({ capability, state })) });
  }
  async migrateSetParameters(params: Record<string, unknown>): Promise<void> { await this.call('migrate-set-parameters', params); }
  async migrate(uri: string): Promise<void> { await this.call('migrate', { uri }); }
  queryMigrate(): Promise<MigrationInfo> { return this.call<MigrationInfo>('query-migrate'); }
  async migrateCancel(): Promise<void> { await this.call('migrate_cancel'); }
  async migrateStartPostcopy(): Promise<void> { await this.call('migrate-start-postcopy'); }

  async nbdServerStart(args: Record<string, unknown>): Promise<void> { await this.call('nbd-server-start', args); }
  async nbdServerStop(): Promise<void> { await this.call('nbd-server-stop'); }
  async blockExportAdd(args: Record<string, unknown>): Promise<void> { await this.call('block-export-add', args); }
  async blockdevMirror(args: Record<string, unknown>): Promise<void> { await this.call('blockdev-mirror', args); }
  async blockJobCancel(job: string, force: boolean): Promise<void> { await this.call('block-job-cancel', { device: job, force }); }
  async jobDismiss(id: string): Promise<void> { await this.call('job-dismiss', { id }); }
  queryJobs(): Promise<JobInfo[]> { return this.call<JobInfo[]>('query-jobs'); }

  async transaction(actions: Array<{ type: string; data: Record<string, unknown> }>): Promise<void> { await this.call('transaction', { actions }); }
  async snapshotJob(kind: 'save' | 'load' | 'delete', args: Record<string, unknown>): Promise<void> { await this.call(`snapshot-${kind}`, args); }
  async nodeSnapshots(): Promise<Record<string, unknown>> {
    const nodes = await this.call<Array<{ 'node-name'?: string; image?: { snapshots?: unknown } }>>('query-named-block-nodes', { flat: true });
    const out: Record<string, unknown> = {};
    for (const n of nodes) if (n['node-name']) out[n['node-name']] = n.image?.snapshots ?? [];
    return out;
  }
}
