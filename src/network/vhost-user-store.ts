/**
 * The registry of vhost-user back ends: one file, $DATA/vhost-user.json (`{"backends": [...]}`), rewritten
 * atomically on every change. An entry is believed only when validating its own name and socket gives exactly
 * it, so a hand-edited file cannot put a path into a chardev option that registration would have refused; such
 * an entry is left out (a NIC that names it then fails closed: its back end is not registered).
 */
import { readFileSync } from 'node:fs';
import { dataPaths } from '../core/paths.js';
import { isBackendRecord, type VhostUserBackend } from '../core/vhost-user.js';
import { writeJsonAtomic } from '../host/fs-atomic.js';

export class VhostUserStore {
  readonly file: string;

  constructor(private dataDir: string) {
    this.file = dataPaths(dataDir).vhostUser;
  }

  /** The registered back ends, by name. */
  list(): VhostUserBackend[] {
    let v: unknown;
    try {
      v = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch {
      return [];
    }
    const list = (v as { backends?: unknown } | null)?.backends;
    if (!Array.isArray(list)) return [];
    const ok = list.filter((b): b is VhostUserBackend => isBackendRecord(b, this.dataDir));
    return ok.filter((b, i) => ok.findIndex((o) => o.name === b.name) === i).sort((a, b) => a.name.localeCompare(b.name));
  }

  find(name: string): VhostUserBackend | null {
    return this.list().find((b) => b.name === name) ?? null;
  }

  /** Replace the whole registry. */
  write(backends: VhostUserBackend[]): void {
    writeJsonAtomic(this.file, { backends: [...backends].sort((a, b) => a.name.localeCompare(b.name)) }, 0o600);
  }
}
