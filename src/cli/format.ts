/** Output helpers for the CLI: JSON, tables and key: value listings. Pure except for the print helpers. */
import { formatDuration, formatSize } from '../core/units.js';

/** Print the API's JSON exactly, pretty-printed: what every --json flag prints. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** A value or '-' when the API says null/undefined. */
export function orDash<T>(value: T | null | undefined, fmt: (v: T) => string = (v) => String(v)): string {
  return value === null || value === undefined ? '-' : fmt(value);
}

export const size = (v: unknown): string => (typeof v === 'number' ? formatSize(v) : orDash(v as string | null));
export const duration = (v: unknown): string => (typeof v === 'number' ? formatDuration(v) : orDash(v as string | null));

/** Columns separated by two spaces, padded to the widest cell; the last column is not padded. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/**
 * A table of items that may come from a cluster controller's union of its hosts' lists (each with its `host`): then a
 * HOST column second, as `corral list` shows instances; from a single daemon (no `host`), the table as it was.
 */
export function hostTable<T extends object>(headers: string[], list: T[], row: (item: T) => string[]): string {
  const hostOf = (i: T): unknown => (i as { host?: unknown }).host;
  if (!list.some((i) => typeof hostOf(i) === 'string')) return table(headers, list.map(row));
  const withHost = (cells: string[], host: string): string[] => [cells[0] ?? '', host, ...cells.slice(1)];
  return table(withHost(headers, 'HOST'), list.map((i) => withHost(row(i), orDash(hostOf(i) as string | undefined))));
}

/** The hosts a cluster controller's union list could not ask, and why. */
export type Unreachable = Array<{ host: string; reason: string }>;

/** A controller's union list names the hosts it could not ask: one warning line each on stderr. */
export function warnUnreachable(res: { unreachable?: Unreachable }, what: string): void {
  for (const u of res.unreachable ?? []) process.stderr.write(`warning: host ${u.host} could not be asked for its ${what}, which are not listed: ${u.reason}\n`);
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v === 'string') return v === '' ? '""' : v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

export type Formatters = Record<string, (v: unknown) => string>;

/**
 * Flatten an object into [key, text] pairs: nested objects as dotted keys ("disk.path"), arrays of scalars
 * joined with ", ", anything else as compact JSON. A formatter keyed by the dotted path wins.
 * Unknown fields are listed too, so new API fields show up without a CLI change.
 */
export function fields(obj: Record<string, unknown>, formatters: Formatters = {}, prefix = ''): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const fmt = formatters[key];
    if (fmt) out.push([key, fmt(v)]);
    else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const nested = fields(v as Record<string, unknown>, formatters, key);
      if (nested.length === 0) out.push([key, '{}']);
      else out.push(...nested);
    } else if (Array.isArray(v)) {
      out.push([key, v.length === 0 ? '-' : v.every((x) => x === null || typeof x !== 'object') ? v.map(scalar).join(', ') : JSON.stringify(v)]);
    } else out.push([key, scalar(v)]);
  }
  return out;
}

/** "key:   value" lines, values aligned. */
export function keyValues(pairs: Array<[string, string]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
}

export function printLines(text: string): void {
  if (text.length > 0) process.stdout.write(`${text}\n`);
}
