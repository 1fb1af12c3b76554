/**
 * Commands that move many instances, through a cluster controller (src/cluster/moves.ts):
 * - `corral host evacuate HOST [--parallel N]`: the host goes into maintenance and everything on it moves off; a line
 *   per instance as it is done; exit 1 (EVACUATION_INCOMPLETE) when anything is left on it.
 * - `corral pool rebalance [--dry-run] [--max-moves N]`: moves that even out the hosts' allocation, each printed
 *   with both hosts' allocation before and after, then (without --dry-run) its outcome; exit 1 when a move failed.
 * The controller streams JSON lines; on a terminal the migrations under way show on one live line (stderr). --json
 * prints the final result as JSON.
 */
import type { Command } from 'commander';
import type { MigrationFigures } from '../core/migration.js';
import { formatShare, type HostLoad, type RebalanceMove } from '../core/rebalance.js';
import type { EvacuationLine, EvacuationOutcome, EvacuationResult } from '../cluster/evacuation.js';
import type { MoveOutcome, RebalanceLine, RebalanceResult } from '../cluster/rebalance.js';
import { CliError } from './client-error.js';
import { lines, type ApiClient } from './client.js';
import { printJson, printLines, size } from './format.js';
import { wholeNumber } from './instances.js';
import { migrationLine } from './migrate.js';

type ErrorLine = { type: 'error'; error?: { code?: string; message?: string } };

/** The migrations under way, on one line of stderr (a terminal only), put aside while a line is printed. */
class LiveLine {
  private readonly now = new Map<string, string>();
  private open = false;
  constructor(private readonly on: boolean) {}

  set(instance: string, text: string | null): void {
    if (text === null) this.now.delete(instance);
    else this.now.set(instance, text);
    this.draw();
  }

  /** Print a line of output (stdout), the live line redrawn under it. */
  print(text: string): void {
    this.clear();
    printLines(text);
    this.draw();
  }

  end(): void {
    this.clear();
  }

  private clear(): void {
    if (this.open) process.stderr.write('\r\x1b[K');
    this.open = false;
  }

  private draw(): void {
    if (!this.on) return;
    this.clear();
    if (this.now.size === 0) return;
    const text = [...this.now].map(([n, t]) => `${n}: ${t}`).join(' | ');
    const width = process.stderr.columns ?? 120;
    process.stderr.write(text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text);
    this.open = true;
  }
}

/** Read a controller's JSON lines; an error line is thrown as the CLI's error. */
async function readLines<L extends { type: string }>(res: NodeJS.ReadableStream, onLine: (l: L) => void): Promise<void> {
  let failure: CliError | undefined;
  await lines(res, (text) => {
    if (text.trim() === '') return;
    const l = JSON.parse(text) as L | ErrorLine;
    if (l.type === 'error') failure = new CliError((l as ErrorLine).error?.message ?? 'the controller gave up', (l as ErrorLine).error?.code ?? 'INTERNAL');
    else onLine(l as L);
  });
  if (failure) throw failure;
}

const ms = (v: number | null | undefined): string => (v === null || v === undefined ? '?' : String(v));

/** One instance's outcome in an evacuation, in one line. */
export function evacuationOutcomeLine(o: EvacuationOutcome): string {
  if (o.outcome === 'migrated') return `${o.instance}: live-migrated to ${o.to} in ${ms(o.totalMs)} ms (downtime ${ms(o.downtimeMs)} ms)`;
  if (o.outcome === 'moved') return `${o.instance}: stopped, its record moved to ${o.to}${o.warning ? ` (${o.warning})` : ''}`;
  return `${o.instance}: left: ${o.code}: ${o.reason}`;
}

/** `HOST 37.5% -> 25.0% (vCPUs 3/8 -> 2/8, memory 384 MiB -> 256 MiB of 23 GiB)`. */
function hostChange(name: string, cap: { cpus: number; memory: number }, before: HostLoad, after: HostLoad): string {
  return `${name} ${formatShare(before.share)} -> ${formatShare(after.share)} (vCPUs ${before.cpus}/${cap.cpus} -> ${after.cpus}/${cap.cpus}, memory ${size(before.memory)} -> ${size(after.memory)} of ${size(cap.memory)})`;
}

/** A proposed move with both hosts' allocation before and after. */
export function moveLine(m: RebalanceMove): string {
  return `move ${m.instance} (${m.cpus} vCPU${m.cpus === 1 ? '' : 's'}, ${size(m.memory)}) ${m.from} -> ${m.to}: ${hostChange(m.from, m.capacity.from, m.before.from, m.after.from)}; ${hostChange(m.to, m.capacity.to, m.before.to, m.after.to)}`;
}

function moveOutcomeLine(o: MoveOutcome): string {
  if (o.outcome === 'migrated') return `  ${o.instance}: live-migrated to ${o.to} in ${ms(o.totalMs)} ms (downtime ${ms(o.downtimeMs)} ms)`;
  if (o.outcome === 'failed') return `  ${o.instance}: failed: ${o.code}: ${o.message}`;
  return `  ${o.instance}: proposed`;
}

export function rebalanceSummary(r: RebalanceResult): string {
  const spread = `the spread of the hosts' dominant shares ${formatShare(r.spreadBefore)} -> ${formatShare(r.spreadAfter)}`;
  if (r.moves.length === 0) {
    return r.even ? `the pool is even (spread ${formatShare(r.spreadBefore)}, within ${formatShare(r.tolerance)}): nothing to move`
      : `no move makes the pool more even (spread ${formatShare(r.spreadBefore)}): nothing to move`;
  }
  if (r.dryRun) return `dry run: ${r.moves.length} move${r.moves.length === 1 ? '' : 's'} proposed, nothing moved; ${spread}`;
  const failed = r.moves.filter((m) => m.outcome === 'failed').length;
  const made = r.moves.length - failed;
  return `${made} move${made === 1 ? '' : 's'} made${failed > 0 ? `, ${failed} failed` : ''}; ${spread}`;
}

export function registerEvacuateCommand(host: Command, client: () => ApiClient): void {
  host
    .command('evacuate <name>')
    .description('put a host in maintenance and move everything off it (through a controller): running instances live-migrate, stopped ones on the shared pool move; it stays in maintenance')
    .option('--parallel <n>', 'migrations at a time (1 to 16)', wholeNumber, 2)
    .option('--json', 'print the result as JSON')
    .action(async (name: string, o: { parallel: number; json?: boolean }) => {
      const res = await client().stream('POST', `/v1/hosts/${encodeURIComponent(name)}/evacuate`, { parallel: o.parallel });
      const live = new LiveLine(Boolean(process.stderr.isTTY) && !o.json);
      const say = (t: string): void => { if (!o.json) live.print(t); };
      let result: EvacuationResult | undefined;
      try {
        await readLines<EvacuationLine>(res, (l) => {
          if (l.type === 'evacuating') say(`evacuating ${l.host} (in maintenance now): ${l.instances} instance${l.instances === 1 ? '' : 's'}, ${l.parallel} at a time`);
          else if (l.type === 'start') live.set(l.instance, l.how === 'live' ? 'migrating' : 'moving its record');
          else if (l.type === 'progress') live.set(l.instance, migrationLine(l as MigrationFigures));
          else if (l.type === 'outcome') {
            live.set(l.instance, null);
            say(evacuationOutcomeLine(l));
          } else if (l.type === 'result') result = l.result;
        });
      } finally {
        live.end();
      }
      if (!result) throw new CliError('the controller ended the stream without a result (did it stop?)');
      if (o.json) printJson(result);
      else printLines(`${result.host} evacuated: ${result.migrated} live-migrated, ${result.moved} moved stopped, ${result.left} left; it stays in maintenance`);
      if (result.left > 0) {
        const left = result.instances.flatMap((i) => (i.outcome === 'left' ? [`${i.instance} (${i.code})`] : []));
        throw new CliError(`${result.left} instance${result.left === 1 ? '' : 's'} left on host ${result.host}, which stays in maintenance: ${left.join(', ')}; run it again once that is fixed`, 'EVACUATION_INCOMPLETE', { host: result.host, left: result.left });
      }
    });
}

export function registerRebalanceCommand(pool: Command, client: () => ApiClient): void {
  pool
    .command('rebalance')
    .description('live-migrate instances so that the hosts\' allocation is more even (through a controller); see what it would do with --dry-run')
    .option('--dry-run', 'print the moves it would make, and make none')
    .option('--max-moves <n>', 'at most this many moves (1 to 100)', wholeNumber, 3)
    .option('--json', 'print the result as JSON')
    .action(async (o: { dryRun?: boolean; maxMoves: number; json?: boolean }) => {
      const res = await client().stream('POST', '/v1/pool/rebalance', { dryRun: o.dryRun === true, maxMoves: o.maxMoves });
      const live = new LiveLine(Boolean(process.stderr.isTTY) && !o.json);
      const say = (t: string): void => { if (!o.json) live.print(t); };
      let result: RebalanceResult | undefined;
      try {
        await readLines<RebalanceLine>(res, (l) => {
          if (l.type === 'move') say(moveLine(l));
          else if (l.type === 'skipped') say(`skip ${l.instance} (on ${l.host}): ${l.code}: ${l.reason}`);
          else if (l.type === 'progress') live.set(l.instance, migrationLine(l as MigrationFigures));
          else if (l.type === 'outcome') {
            live.set(l.instance, null);
            say(moveOutcomeLine(l));
          } else if (l.type === 'result') result = l.result;
        });
      } finally {
        live.end();
      }
      if (!result) throw new CliError('the controller ended the stream without a result (did it stop?)');
      if (o.json) printJson(result);
      else printLines(rebalanceSummary(result));
      const failed = result.moves.filter((m): m is MoveOutcome & { outcome: 'failed' } => m.outcome === 'failed');
      if (failed.length > 0) {
        throw new CliError(`${failed.length} of ${result.moves.length} moves failed: ${failed.map((m) => `${m.instance}: ${m.message}`).join('; ')}`, failed[0]!.code, { failed: failed.length });
      }
    });
}
