/**
 * What crashed work leaves behind, found and removed when the daemon starts (after reconcile has adopted what
 * lives): instance folders that no row names (a create, copy or import cut short before its row was stored, a delete
 * after it), and the point-in-time backups a copy or export was reading (disks-at-instant.ts) in the folders of the others.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { dataPaths } from '../core/paths.js';
import { listDir } from '../host/sysfs.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A copy's or export's backup of a running instance's disk (disks-at-instant.ts). */
const BACKUP = /^backup-[0-9a-f]{8}(-[0-9]+)?\.qcow2$/;

/** Remove instances/UUID and run/UUID folders of no instance in `rows`, and backups left in theirs; returns what went. */
export function sweepInstanceDirs(dataDir: string, rows: ReadonlyArray<{ uuid: string }>): string[] {
  const known = new Set(rows.map((r) => r.uuid));
  const p = dataPaths(dataDir);
  const gone: string[] = [];
  for (const parent of [p.instances, p.run]) {
    for (const n of listDir(parent)) {
      if (!UUID.test(n)) continue;
      if (known.has(n)) {
        if (parent !== p.instances) continue;
        for (const f of listDir(join(parent, n)).filter((x) => BACKUP.test(x))) {
          rmSync(join(parent, n, f), { force: true });
          gone.push(join(parent, n, f));
        }
        continue;
      }
      rmSync(join(parent, n), { recursive: true, force: true });
      gone.push(join(parent, n));
    }
  }
  return gone;
}

/** Is process `pid` alive (its /proc entry exists)? For the sweep of staging folders named by their maker's pid. */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
