/** Image commands: build-tiny, import, list, delete. Long jobs stream progress as JSON lines (ndjson). */
import { createReadStream, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { ApiClient, CliError, lines } from './client.js';
import { fields, hostTable, keyValues, orDash, printJson, printLines, size, warnUnreachable, type Unreachable } from './format.js';
import type { Image } from '../api/schemas-storage.js';

export type ImageRecord = Image & { [extra: string]: unknown };

interface ProgressEvent { type: 'progress'; step?: string; message?: string; percent?: number }
type JobEvent = ProgressEvent | ({ type: 'result' } & Record<string, unknown>) | { type: 'error'; error: { code?: string; message?: string } };

/** One stderr line per progress event: `[download] linux-image-... 42%`. */
export function progressLine(ev: ProgressEvent): string {
  const parts = [`[${ev.step ?? 'progress'}]`];
  if (ev.message) parts.push(ev.message);
  if (typeof ev.percent === 'number' && Number.isFinite(ev.percent)) parts.push(`${Math.round(ev.percent)}%`);
  return parts.join(' ');
}

/**
 * Progress on stderr: on a terminal one line per step, redrawn in place as its percentage moves; otherwise a
 * line when the step changes or its percentage passes another 10%.
 */
export class ProgressPrinter {
  private step = '';
  private lastTenth = -1;
  private open = false;

  constructor(private out: NodeJS.WriteStream = process.stderr, private tty = Boolean(process.stderr.isTTY)) {}

  show(ev: ProgressEvent): void {
    const step = ev.step ?? 'progress';
    const tenth = typeof ev.percent === 'number' ? Math.floor(ev.percent / 10) : -1;
    const newStep = step !== this.step;
    if (this.tty) {
      this.out.write(`${newStep && this.open ? '\n' : '\r\x1b[K'}${progressLine(ev)}`);
      this.open = true;
    } else if (newStep || tenth !== this.lastTenth) {
      this.out.write(`${progressLine(ev)}\n`);
    }
    this.step = step;
    this.lastTenth = tenth;
  }

  end(): void {
    if (this.tty && this.open) this.out.write('\n');
    this.open = false;
  }
}

/** Run a streaming image job: progress to stderr, the image on success, a CliError on an error event. */
export async function runJob(client: ApiClient, path: string, body: unknown): Promise<ImageRecord> {
  return readJob<ImageRecord>(await client.stream('POST', path, body), 'image');
}

/** Read a job's JSON lines: progress to stderr, the result's `key` on success, a CliError on an error event. */
export async function readJob<T>(res: NodeJS.ReadableStream, key: string): Promise<T> {
  const progress = new ProgressPrinter();
  let image: T | undefined;
  let failure: CliError | undefined;
  await lines(res, (line) => {
    if (line.trim() === '') return;
    let ev: JobEvent;
    try {
      ev = JSON.parse(line) as JobEvent;
    } catch {
      process.stderr.write(`${line}\n`);
      return;
    }
    if (ev.type === 'progress') progress.show(ev);
    else if (ev.type === 'result') image = ev[key] as T;
    else if (ev.type === 'error') failure = new CliError(ev.error?.message ?? 'the job failed', ev.error?.code ?? 'INTERNAL');
  });
  progress.end();
  if (failure) throw failure;
  if (!image) throw new CliError('the daemon ended the stream without a result (did it stop?)');
  return image;
}

export function imageDetails(img: ImageRecord): string {
  return keyValues(fields(img, { virtualSize: size }));
}

/** The images, one a row; a HOST column when they come from a cluster controller's union (rows carry `host`). */
export function imageTable(list: ImageRecord[]): string {
  return hostTable(
    ['NAME', 'KIND', 'FORMAT', 'SIZE', 'CREATED', 'SOURCE'],
    list, (i) => [i.name, orDash(i.kind), orDash(i.format), size(i.virtualSize), orDash(i.createdAt), orDash(i.source)],
  );
}

function printImage(img: ImageRecord, json: boolean | undefined): void {
  if (json) printJson(img);
  else printLines(imageDetails(img));
}

export function registerImageCommands(program: Command, client: () => ApiClient): void {
  const image = program.command('image').alias('images').description('manage images');

  image
    .command('build-tiny')
    .description('build the tiny guest image (kernel + initramfs) from Debian packages')
    .option('--force', 'rebuild even if it exists')
    .option('--json', 'print the resulting image as API JSON')
    .action(async (o: { force?: boolean; json?: boolean }) => {
      printImage(await runJob(client(), '/v1/images/build-tiny', o.force ? { force: true } : {}), o.json);
    });

  image
    .command('import')
    .description('import a disk image file that the daemon can read, or with --upload one from here (a remote daemon)')
    .argument('<name>', 'image name')
    .argument('<file>', 'image file (a relative path is taken from the current directory)')
    .addOption(new Option('--format <format>', 'the file format (never probed)').choices(['qcow2', 'raw']).makeOptionMandatory())
    .option('--upload', 'send the file as the request\'s body (POST /v1/images/NAME/upload): the daemon need not see it')
    .option('--json', 'print the resulting image as API JSON')
    .action(async (name: string, file: string, o: { format: string; upload?: boolean; json?: boolean }) => {
      const path = resolve(process.cwd(), file);
      if (!o.upload) {
        printImage(await runJob(client(), '/v1/images', { name, file: path, format: o.format }), o.json);
        return;
      }
      const st = statSync(path);
      if (!st.isFile()) throw new CliError(`${path} is not a regular file`);
      const res = await client().upload('POST', `/v1/images/${encodeURIComponent(name)}/upload?format=${o.format}`, createReadStream(path), 'application/octet-stream', st.size);
      printImage(await readJob<ImageRecord>(res, 'image'), o.json);
    });

  image
    .command('list')
    .alias('ls')
    .description('list images')
    .option('--json', 'print the API JSON')
    .action(async (o: { json?: boolean }) => {
      const res = await client().call<{ images: ImageRecord[]; unreachable?: Unreachable }>('GET', '/v1/images');
      if (o.json) printJson(res);
      else {
        warnUnreachable(res, 'images');
        printLines(imageTable(res.images ?? []));
      }
    });

  image
    .command('delete')
    .alias('rm')
    .description('delete an image')
    .argument('<name>', 'image name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const res = await client().call<{ deleted?: string }>('DELETE', `/v1/images/${encodeURIComponent(name)}`);
      if (o.json) printJson(res);
      else printLines(`image ${res?.deleted ?? name}: deleted`);
    });
}
