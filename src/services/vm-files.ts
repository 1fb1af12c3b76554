/**
 * An instance's own files that its QEMU opens, handed to QEMU's unprivileged user (src/host/run-as.ts) for a run
 * and taken back when it ends:
 * - the runtime dir (QEMU and its storage daemons make their sockets and pidfiles there): theirs, 0700, made fresh
 *   for each run and removed after;
 * - the root disk overlay, the UEFI variable store and the console log with its rotated part (the console keeper,
 *   src/qemu/console-keeper.ts, appends to the one and rotates into the other; it cannot make files here, so both
 *   are made if missing): theirs, 0600, while the VM runs; root's, 0600, otherwise.
 * The instance dir itself stays root's, 0711: QEMU can open the files it was given there but cannot list the dir,
 * nor make, rename or replace anything in it (so no symlink of its making is ever followed by the daemon), nor
 * read the daemon's own files (QEMU's stderr, the exit record).
 * Volumes are handed over by the disk service, which knows their backing chains.
 */
import { existsSync } from 'node:fs';
import type { InstancePaths } from '../core/paths.js';
import { giveTo, ownAs, takeBack, type RunAs } from '../host/run-as.js';
import type { InstanceRow } from '../store/store.js';
import type { InstanceHooks } from './instance-hooks.js';

/** The files of an instance dir QEMU writes to during a run. */
function runFiles(p: InstancePaths): string[] {
  return [p.disk, p.efiVars, p.consoleLog, p.consoleLogRotated];
}

export function vmFileHooks(who: RunAs, paths: (row: InstanceRow) => InstancePaths): InstanceHooks {
  return {
    beforeLaunch: (row) => {
      const p = paths(row);
      ownAs(p.dir, 0, 0, 0o711); // older instance dirs were 0700
      giveTo(who, p.runDir, { dir: true });
    },
    beforeSpawn: async (row) => {
      const p = paths(row);
      for (const f of runFiles(p)) if (f === p.consoleLog || f === p.consoleLogRotated || existsSync(f)) giveTo(who, f, { create: true });
    },
    exited: (row) => {
      for (const f of runFiles(paths(row))) takeBack(f);
    },
  };
}
