/**
 * Parsing and printing sizes. A string needs a unit ("512M", "1G", "1.5GiB", "4096B"): a bare "1000" is refused
 * rather than read as 1000 bytes, a mistake nobody notices until a disk is 1000 bytes. A JSON number is bytes.
 * Pure.
 */
import { invalidSpec } from './errors.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const UNITS: Record<string, number> = {
  b: 1,
  k: KiB, kb: KiB, kib: KiB,
  m: MiB, mb: MiB, mib: MiB,
  g: GiB, gb: GiB, gib: GiB,
  t: 1024 * GiB, tb: 1024 * GiB, tib: 1024 * GiB,
};

/** Parse a size given as a number of bytes or a string with a binary unit (B, K, M, G, T). Throws INVALID_SPEC. */
export function parseSize(field: string, value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0) throw invalidSpec(field, `size must be a positive whole number of bytes, got ${value}`);
    return value;
  }
  if (typeof value !== 'string') throw invalidSpec(field, 'size must be a string like "512M" or a number of bytes');
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) throw invalidSpec(field, `"${value}" is not a size (examples: 512M, 1G, 20GiB)`);
  if (m[2] === '') {
    throw invalidSpec(field, `"${value.trim()}" has no unit: say what it counts, e.g. "${m[1]}M" or "${m[1]}G" (or "${m[1]}B" for bytes)`);
  }
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) throw invalidSpec(field, `unknown unit "${m[2]}" in "${value}" (use K, M, G or T)`);
  const bytes = Math.round(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw invalidSpec(field, `size must be positive, got "${value}"`);
  return bytes;
}

const UNIT_NAMES: Array<[number, string]> = [[GiB, 'GiB'], [MiB, 'MiB'], [KiB, 'KiB']];

/** A size for people: "512 MiB", "1.5 GiB" (rounded: for listings). */
export function formatSize(bytes: number): string {
  const abs = Math.abs(bytes);
  if (abs >= GiB) return `${+(bytes / GiB).toFixed(2)} GiB`;
  if (abs >= MiB) return `${+(bytes / MiB).toFixed(1)} MiB`;
  if (abs >= KiB) return `${+(bytes / KiB).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/**
 * A size for messages that compare sizes: "2 GiB", "1.5 GiB", or, when no unit shows it exactly, the rounded
 * size with the bytes ("1 GiB (1073741825 bytes)"), so two sizes that differ never print the same.
 */
export function formatSizeExact(bytes: number): string {
  const [unit, name] = UNIT_NAMES.find(([u]) => Math.abs(bytes) >= u) ?? [1, 'B'];
  const hundredths = Math.round((bytes / unit) * 100);
  return hundredths * unit === bytes * 100 ? `${hundredths / 100} ${name}` : `${formatSize(bytes)} (${bytes} bytes)`;
}

export function formatDuration(seconds: number): string {
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  if (m > 0) return `${m}m${r}s`;
  return `${r}s`;
}
