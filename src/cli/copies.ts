/**
 * corral copy, export, import and publish: copies of instances, archives of them, images made from them. Long jobs
 * stream progress (stderr); the archive itself streams to or from a file (or stdout / stdin with `-`).
 */
import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import type { Command } from 'commander';
import { CliError, type ApiClient } from './client.js';
import { printJson, printLines } from './format.js';
import { ProgressPrinter, imageDetails, readJob, type ImageRecord } from './images.js';
import type { Instance } from './show.js';

interface PreparedExport { id: string; instance: string; size: number; diskBytes: number; manifest: { consistency: string; files: Array<{ name: string; size: number; sha256: string }> } }

/** A pass-through that reports how much of `total` bytes went by. */
function counter(step: string, message: string, total: number | null, printer: ProgressPrinter): Transform {
  let n = 0;
  return new Transform({
    transform(c: Buffer, _e, done) {
      n += c.length;
      printer.show({ type: 'progress', step, message, ...(total ? { percent: (100 * n) / total } : {}) });
      done(null, c);
    },
  });
}

const enc = encodeURIComponent;

export function registerCopyCommands(program: Command, client: () => ApiClient): void {
  program
    .command('copy')
    .description('copy an instance: a new stopped instance with new MACs (linked: a new overlay on the same image; --full: flattened); attached volumes copied whole as NEW-VOLUME; no snapshots unless --snapshots')
    .argument('<name>', 'the instance to copy (stopped, or running: read through a point-in-time backup)')
    .argument('<new>', 'the new instance')
    .option('--full', 'a standalone root disk with no backing file (flattened) instead of an overlay on the image')
    .option('--snapshots', 'carry the snapshots: the disks copied whole with them, and their records (a stopped instance; not with --full)')
    .option('--json', 'print the new instance as API JSON')
    .action(async (name: string, to: string, o: { full?: boolean; snapshots?: boolean; json?: boolean }) => {
      const body = { name: to, ...(o.full ? { full: true } : {}), ...(o.snapshots ? { snapshots: true } : {}) };
      const inst = await readJob<Instance>(await client().stream('POST', `/v1/instances/${enc(name)}/copy`, body), 'instance');
      if (o.json) printJson(inst);
      else printLines(`instance ${to}: copied from ${name}${o.full ? ' (full)' : ''}${o.snapshots ? ' with its snapshots' : ''}, stopped`);
    });

  program
    .command('publish')
    .description('make an image of a stopped instance\'s root disk (flattened; its sha256 recorded)')
    .argument('<name>', 'the instance (stopped)')
    .argument('<image>', 'the new image')
    .option('--json', 'print the image as API JSON')
    .action(async (name: string, image: string, o: { json?: boolean }) => {
      const img = await readJob<ImageRecord>(await client().stream('POST', `/v1/instances/${enc(name)}/publish`, { image }), 'image');
      if (o.json) printJson(img);
      else printLines(imageDetails(img));
    });

  program
    .command('export')
    .description('write an instance to an archive (tar: manifest, compressed flattened disks, sha256 of each); a running one through a point-in-time backup')
    .argument('<name>', 'the instance')
    .argument('<file>', 'the archive to write, or - for stdout')
    .option('--snapshots', 'keep the disks whole with their internal snapshots and the snapshot records (a stopped instance; gzip-compressed)')
    .option('--json', 'print what was written as JSON (the archive\'s size, the disks\' used size, the manifest)')
    .action(async (name: string, file: string, o: { json?: boolean; snapshots?: boolean }) => {
      if (file === '-' && o.json) throw new CliError('--json prints on stdout, where the archive goes with -: give a file instead', 'INVALID_SPEC');
      const c = client();
      const x = await readJob<PreparedExport>(await c.stream('POST', `/v1/instances/${enc(name)}/export`, o.snapshots ? { snapshots: true } : {}), 'export');
      const res = await c.stream('GET', `/v1/exports/${enc(x.id)}`);
      const printer = new ProgressPrinter();
      const count = counter('download', `writing the archive of ${name}`, x.size, printer);
      if (file === '-') {
        await pipeline(res, count, process.stdout);
      } else {
        const path = resolve(process.cwd(), file);
        const part = `${path}.part`;
        try {
          await pipeline(res, count, createWriteStream(part, { mode: 0o600 }));
          if (statSync(part).size !== x.size) throw new CliError(`the archive came with ${statSync(part).size} bytes, not ${x.size}: the download was cut`, 'INVALID_ARCHIVE');
          renameSync(part, path);
        } catch (e) {
          rmSync(part, { force: true });
          throw e;
        } finally {
          printer.end();
        }
      }
      printer.end();
      if (o.json) printJson({ file: resolve(process.cwd(), file), size: x.size, diskBytes: x.diskBytes, manifest: x.manifest });
      else if (file !== '-') printLines(`instance ${name}: exported to ${file} (${x.size} bytes; its disk uses ${x.diskBytes}; ${x.manifest.consistency === 'backup' ? 'a point-in-time backup of the running guest' : 'stopped'})`);
    });

  program
    .command('import')
    .description('make a stopped instance from an archive (every sha256 checked before anything is made; new uuid and MACs)')
    .argument('<file>', 'the archive, or - for stdin')
    .argument('[name]', 'the new instance (default: the archive\'s)')
    .option('--json', 'print the new instance as API JSON')
    .action(async (file: string, name: string | undefined, o: { json?: boolean }) => {
      const path = file === '-' ? null : resolve(process.cwd(), file);
      const length = path === null ? null : statSync(path).size;
      const body = path === null ? process.stdin : createReadStream(path);
      const q = name === undefined ? '' : `?name=${enc(name)}`;
      const inst = await readJob<Instance>(await client().upload('POST', `/v1/instances/import${q}`, body, 'application/x-tar', length), 'instance');
      if (o.json) printJson(inst);
      else printLines(`instance ${inst.name}: imported, stopped`);
    });
}
