/**
 * Network records: $DATA/networks/<name>/network.json through RecordDir (made in a hidden staging folder,
 * the record written atomically, the folder renamed into place; removed by moving it aside first). A bridge
 * network's folder also holds its dnsmasq files (leases, pid file, log). A record is only believed when it is
 * exactly what validation makes of its own name, kind, cidr and nat: a hand-edited record cannot smuggle
 * other bridge names or addresses into ip, nft or dnsmasq.
 */
import { existsSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { dataPaths } from '../core/paths.js';
import { DEFAULT_NETWORK, DEFAULT_NETWORK_RECORD, isNetworkRecord, validateNetwork, type NetworkRecord } from '../core/networks.js';
import { validateName } from '../core/spec.js';
import { RecordDir } from '../storage/record-dir.js';
import { dnsmasqFiles, type DnsmasqFiles } from './dnsmasq.js';

const RECORD = 'network.json';

/** A record that validation of its own request fields reproduces exactly. */
export function isCanonicalRecord(v: unknown): v is NetworkRecord {
  if (!isNetworkRecord(v) || v.builtin) return false;
  try {
    const again = validateNetwork(v.kind === 'bridge' ? { name: v.name, kind: v.kind, cidr: v.cidr, nat: v.nat } : { name: v.name, kind: v.kind }, v.createdAt ?? '');
    const stored = v as unknown as Record<string, unknown>;
    const made = again as unknown as Record<string, unknown>;
    const keys = new Set([...Object.keys(made), ...Object.keys(stored)]);
    keys.delete('createdAt');
    return [...keys].every((k) => JSON.stringify(made[k]) === JSON.stringify(stored[k]));
  } catch {
    return false;
  }
}

export class NetworkStore {
  readonly dir: string;
  private store: RecordDir<NetworkRecord>;

  constructor(dataDir: string) {
    this.dir = dataPaths(dataDir).networks;
    this.store = new RecordDir(this.dir, RECORD, isCanonicalRecord, 0o700);
  }

  pathOf(name: string): string {
    return this.store.pathOf(name);
  }

  filesOf(name: string): DnsmasqFiles {
    return dnsmasqFiles(this.pathOf(name));
  }

  /** The stored networks (not the built-in default), by name. */
  records(): NetworkRecord[] {
    return this.store.list();
  }

  /** default first, then the stored ones. */
  list(): NetworkRecord[] {
    return [DEFAULT_NETWORK_RECORD, ...this.records()];
  }

  /** Whether the name is taken: the built-in network, or a folder of that name (even one without a valid record). */
  exists(name: string): boolean {
    return name === DEFAULT_NETWORK || existsSync(this.pathOf(name));
  }

  find(name: string): NetworkRecord | null {
    if (name === DEFAULT_NETWORK) return DEFAULT_NETWORK_RECORD;
    return this.store.read(name);
  }

  record(name: string): NetworkRecord {
    validateName('name', name);
    const r = this.find(name);
    if (!r) throw new CorralError('NETWORK_NOT_FOUND', `network "${name}" does not exist`, { name });
    return r;
  }

  /** What crashed work left in the folder (record-dir.ts sweep()): dead makers' staging folders, removal folders. */
  sweep(alive: (pid: number) => boolean): string[] {
    return this.store.sweep(alive);
  }

  /** A staging folder holding the record; place() moves it into place, discard() drops it. */
  stage(record: NetworkRecord): string {
    const staging = this.store.stage(record.name);
    try {
      this.store.writeRecord(staging, record);
    } catch (e) {
      this.store.discard(staging);
      throw e;
    }
    return staging;
  }

  place(staging: string, name: string): void {
    this.store.place(staging, name);
  }

  discard(staging: string): void {
    this.store.discard(staging);
  }

  remove(name: string): void {
    this.store.remove(name);
  }
}
