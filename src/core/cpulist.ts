/** Linux CPU lists ("0-3,6"), as sysfs and taskset write them. Pure. */
import { CorralError } from './errors.js';

/**
 * No CPU number is above this (Linux's NR_CPUS is at most 8192): a list naming one is refused before it is
 * expanded, so "0-4294967296" or a number past 2^53 (where c++ stops counting) cannot exhaust the daemon's memory.
 */
export const MAX_CPU_NUMBER = 65535;

export function parseCpuList(list: string): number[] {
  const out: number[] = [];
  for (const part of list.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new CorralError('INVALID_SPEC', `bad CPU list element "${part}"`, { field: 'cpuList' });
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (Math.max(lo, hi) > MAX_CPU_NUMBER) throw new CorralError('INVALID_SPEC', `CPU ${Math.max(lo, hi)} in "${part.trim()}" is beyond any host's (at most ${MAX_CPU_NUMBER})`, { field: 'cpuList' });
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}

/** The shortest CPU list text for a set of CPUs. */
export function formatCpuList(cpus: readonly number[]): string {
  const s = [...new Set(cpus)].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < s.length; ) {
    let j = i;
    while (j + 1 < s.length && s[j + 1] === s[j]! + 1) j++;
    parts.push(j === i ? `${s[i]}` : `${s[i]}-${s[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
