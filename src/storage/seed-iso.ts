/**
 * cloud-init's NoCloud seed disk: an ISO 9660 image with Joliet and Rock Ridge names (meta-data, user-data,
 * network-config are not ISO 9660 names), volume id `cidata`, made by xorriso (Debian package xorriso).
 *
 * The image is byte-for-byte the same for the same files, wherever and whenever it is made: every date in it (the
 * volume's, the files') is SEED_EPOCH (xorriso reads SOURCE_DATE_EPOCH; the files' mtimes are set to it). So the
 * destination of a live migration, which writes the seed again from the spec, gives the guest the very disk the
 * source gave it.
 */
import { mkdtempSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { plainEnv, run } from '../host/exec.js';

/** The seed's volume id: what cloud-init's NoCloud datasource looks for (blkid LABEL=cidata). */
export const SEED_LABEL = 'cidata';
/** Every date in a seed image: 2000-01-01T00:00:00Z. */
export const SEED_EPOCH = 946684800;

/** Write `files` (name -> text) as a seed image at `out` (0600, replaced atomically). */
export async function writeSeedIso(out: string, files: Record<string, string>): Promise<void> {
  const work = mkdtempSync(join(dirname(out), `.${basename(out)}.`));
  try {
    const names = Object.keys(files).sort();
    for (const name of names) {
      const f = join(work, name);
      writeFileSync(f, files[name] ?? '', { mode: 0o600 });
      utimesSync(f, SEED_EPOCH, SEED_EPOCH);
    }
    const tmp = join(work, 'seed.iso');
    await run('xorriso', ['-as', 'mkisofs', '-quiet', '-output', tmp, '-volid', SEED_LABEL, '-joliet', '-rational-rock', ...names], {
      timeoutMs: 60_000, cwd: work, env: { ...plainEnv(), SOURCE_DATE_EPOCH: String(SEED_EPOCH) }, what: 'xorriso (the cloud-init seed)',
    });
    renameSync(tmp, out);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
