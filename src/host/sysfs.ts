/** Small tolerant readers for sysfs/procfs files: a missing or unreadable file is null, never a throw. */
import { readFileSync, readdirSync, statSync } from 'node:fs';

/** The file's text, trimmed; null if it cannot be read. */
export function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The file's content as a decimal integer; null if missing or not a number. */
export function readInt(path: string): number | null {
  const text = readText(path);
  if (text === null || !/^-?\d+$/.test(text)) return null;
  return Number(text);
}

/** Entry names in a directory, sorted; empty if it is missing. */
export function listDir(path: string): string[] {
  try {
    return readdirSync(path).sort();
  } catch {
    return [];
  }
}

export function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

export function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Numeric suffixes of entries named PREFIX<n> ("cpu3", "node1"), ascending. */
export function numberedEntries(dir: string, prefix: string): number[] {
  const re = new RegExp(`^${prefix}(\\d+)$`);
  return listDir(dir)
    .map((n) => re.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}
