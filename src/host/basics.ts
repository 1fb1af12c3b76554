/** Basic host facts: CPUs and memory. Every reader takes the proc/sys root so tests can use fake trees. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCpuList } from '../core/cpulist.js';

export { parseCpuList };

export interface MemInfo {
  total: number;
  available: number;
}

export function readMemInfo(proc = '/proc'): MemInfo {
  const text = readFileSync(join(proc, 'meminfo'), 'utf8');
  const get = (k: string): number => {
    const m = new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { total: get('MemTotal'), available: get('MemAvailable') };
}

/** Online CPUs from sysfs ("0-3,6"), falling back to /proc/cpuinfo processor lines. */
export function readOnlineCpus(sys = '/sys', proc = '/proc'): number[] {
  try {
    return parseCpuList(readFileSync(join(sys, 'devices/system/cpu/online'), 'utf8'));
  } catch {
    const text = readFileSync(join(proc, 'cpuinfo'), 'utf8');
    return [...text.matchAll(/^processor\s*:\s*(\d+)/gm)].map((m) => Number(m[1]));
  }
}

export function readCpuModel(proc = '/proc'): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync(join(proc, 'cpuinfo'), 'utf8'));
    return m?.[1]?.trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
