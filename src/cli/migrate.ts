/**
 * `corral migrate NAME [--to HOST]`: live migration through a cluster controller. The controller streams JSON
 * lines (src/cluster/migration.ts): progress (a live line on a terminal), then the result or an error.
 * `corral migrate NAME --cancel` cancels one under way: the instance keeps running where it was (refused once it
 * switched to postcopy). `--postcopy`: the rule is core/migration-transport.ts's shouldStartPostcopy.
 */
import type { Command } from 'commander';
import { parseSize } from '../core/units.js';
import type { MigrationFigures } from '../core/migration.js';
import type { MigrationResult } from '../cluster/migration.js';
import type { DiskProgress } from '../cluster/migration-disks.js';
import { CliError } from './client-error.js';
import { lines, type ApiClient } from './client.js';
import { printJson, printLines, size } from './format.js';
import { wholeNumber } from './instances.js';

const enc = encodeURIComponent;

/** One progress line: `active  pass 2  RAM left 120 MiB of 1 GiB  41 MiB/s  dirty 2 MiB/s  expected downtime 12 ms`. */
export function migrationLine(f: MigrationFigures): string {
  const parts = [f.status];
  if (f.passes !== null) parts.push(`pass ${f.passes}`);
  if (f.remainingBytes !== null) parts.push(`RAM left ${size(f.remainingBytes)}${f.totalBytes !== null ? ` of ${size(f.totalBytes)}` : ''}`);
  if (f.rate !== null) parts.push(`${size(f.rate)}/s`);
  if (f.dirtyRate !== null) parts.push(`dirty ${size(f.dirtyRate)}/s`);
  if (f.expectedDowntimeMs !== null) parts.push(`expected downtime ${f.expectedDowntimeMs} ms`);
  return parts.join('  ');
}

/**
 * One progress line of the local disks: the base image on its way (`image tiny  12 MiB of 20 MiB`), then the
 * mirrors (`disks copying  70 MiB of 200 MiB  disk0 6 MiB of 9 MiB  vol-data 64 MiB of 191 MiB`).
 */
export function diskLine(d: DiskProgress): string {
  if (d.phase === 'image') return `image ${d.image}  ${size(d.doneBytes)} of ${size(d.totalBytes)}`;
  const each = d.disks.map((x) => `${x.disk} ${size(x.doneBytes)} of ${size(x.totalBytes)}${x.ready ? ' ready' : ''}`);
  return [`disks ${d.status}`, `${size(d.doneBytes)} of ${size(d.totalBytes)}`, ...each].join('  ');
}

/** `--bandwidth 100M` or `100MiB/s`: bytes per second. */
export function parseBandwidth(v: string): number {
  return parseSize('bandwidth', v.replace(/\/s$/, ''));
}

interface MigrateOpts { to?: string; maxDowntime: number; bandwidth?: number; autoConverge: boolean; postcopy?: boolean; timeout?: number; cancel?: boolean; json?: boolean }

type Line = { type: 'progress' } & MigrationFigures | { type: 'disks' } & DiskProgress | { type: 'result'; result: MigrationResult } | { type: 'error'; error?: { code?: string; message?: string } };

export function registerMigrateCommand(program: Command, client: () => ApiClient): void {
  program
    .command('migrate')
    .description('live-migrate a running instance to another host of the cluster (through a controller; local disks and volumes are mirrored along)')
    .argument('<name>', 'instance name')
    .option('--to <host>', 'the destination host (default: the placer chooses, as for an HA move)')
    .option('--max-downtime <ms>', 'the longest pause QEMU may make at the switch-over', wholeNumber, 300)
    .option('--bandwidth <size/s>', 'cap the transfer rate (e.g. 100M/s), of the RAM and of each local disk\'s mirror', parseBandwidth)
    .option('--auto-converge', 'slow the guest\'s vCPUs down when it dirties memory faster than it moves (default)', true)
    .option('--no-auto-converge', 'never slow the guest down')
    .option('--postcopy', 'switch to postcopy once the first pass is done: the guest runs on the destination while the rest of its memory comes (always ends; no rollback after the switch)')
    .option('--timeout <seconds>', 'give up (cancel) after this long, unless switched to postcopy; the instance keeps running where it was', wholeNumber)
    .option('--cancel', 'cancel the migration of this instance under way')
    .option('--json', 'print the final figures (totalMs, downtimeMs, setupMs, bytes, passes; diskBytes, diskMs when disks moved) as JSON')
    .action(async (name: string, o: MigrateOpts) => {
      if (o.cancel) {
        const f = await client().call<MigrationFigures>('POST', `/v1/instances/${enc(name)}/migrate/cancel`, {});
        if (o.json) printJson(f);
        else printLines(`${name}: migration ${f.status === 'completed' ? 'had completed' : 'cancelled'}`);
        return;
      }
      const body = {
        ...(o.to !== undefined ? { to: o.to } : {}), maxDowntimeMs: o.maxDowntime, autoConverge: o.autoConverge,
        ...(o.bandwidth !== undefined ? { bandwidth: o.bandwidth } : {}), ...(o.timeout !== undefined ? { timeoutS: o.timeout } : {}),
        ...(o.postcopy ? { postcopy: true } : {}),
      };
      const res = await client().stream('POST', `/v1/instances/${enc(name)}/migrate`, body);
      const tty = Boolean(process.stderr.isTTY) && !o.json;
      let result: MigrationResult | undefined;
      let failure: CliError | undefined;
      let open = false;
      await lines(res, (text) => {
        if (text.trim() === '') return;
        const ev = JSON.parse(text) as Line;
        if (ev.type === 'progress' || ev.type === 'disks') {
          if (tty) {
            process.stderr.write(`\r\x1b[K${ev.type === 'disks' ? diskLine(ev) : migrationLine(ev)}`);
            open = true;
          }
        } else if (ev.type === 'result') result = ev.result;
        else failure = new CliError(ev.error?.message ?? 'the migration failed', ev.error?.code ?? 'INTERNAL');
      });
      if (open) process.stderr.write('\n');
      if (failure) throw failure;
      if (!result) throw new CliError('the controller ended the stream without a result (did it stop?)');
      if (o.json) printJson(result);
      else {
        const disks = result.diskBytes !== undefined ? `; disks: ${size(result.diskBytes)} mirrored in ${result.diskMs ?? '?'} ms${result.imageBytes ? `, image ${size(result.imageBytes)} sent first` : ''}` : '';
        printLines(`${name}: migrated from ${result.from} to ${result.to} in ${result.totalMs ?? '?'} ms (downtime ${result.downtimeMs ?? '?'} ms, ${result.passes ?? '?'} passes, ${size(result.transferredBytes ?? 0)} sent${result.tls ? ' over TLS' : ' in plain TCP'}${result.postcopy ? ', postcopy' : ''}${disks})`);
      }
    });
}
