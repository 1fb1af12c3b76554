/**
 * cloud-init's NoCloud seed of an instance: written from its spec (src/core/cloud-init.ts) into its own dir at each
 * start, a migration's incoming start too, so it is never state that must travel: the destination writes the same
 * bytes (src/storage/seed-iso.ts). QEMU's user may read it, not write it (root's, group corral-qemu, 0640) while the
 * VM runs; root's alone (0600) otherwise. It goes with the instance dir when the instance is deleted.
 */
import { rmSync } from 'node:fs';
import { seedFiles } from '../core/cloud-init.js';
import type { InstancePaths } from '../core/paths.js';
import { lendTo, takeBack, type RunAs } from '../host/run-as.js';
import { writeSeedIso } from '../storage/seed-iso.js';
import type { InstanceRow } from '../store/store.js';
import type { InstanceHooks } from './instance-hooks.js';

export function cloudInitHooks(who: RunAs, paths: (row: InstanceRow) => InstancePaths): InstanceHooks {
  return {
    beforeLaunch: async (row) => {
      const p = paths(row);
      const ci = row.spec.cloudInit;
      if (!ci) {
        rmSync(p.seed, { force: true });
        return;
      }
      await writeSeedIso(p.seed, seedFiles(row.uuid, ci));
      lendTo(who, p.seed);
    },
    exited: (row) => takeBack(paths(row).seed),
  };
}
