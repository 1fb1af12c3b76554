/** Facts about a running QEMU process, read from /proc. The proc root is a parameter so tests can fake it. */
import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';

export function readCmdline(pid: number, proc = '/proc'): string[] | null {
  try {
    const raw = readFileSync(join(proc, String(pid), 'cmdline'));
    if (raw.length === 0) return null;
    const parts = raw.toString('utf8').split('\0');
    if (parts[parts.length - 1] === '') parts.pop();
    return parts;
  } catch {
    return null;
  }
}

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat): tells a reused pid apart. */
export function processStartTicks(pid: number, proc = '/proc'): number | null {
  try {
    const stat = readFileSync(join(proc, String(pid), 'stat'), 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const v = Number(rest[19]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

/** State letter from /proc/PID/stat; 'Z' for a zombie, null when gone. */
export function processState(pid: number, proc = '/proc'): string | null {
  try {
    const stat = readFileSync(join(proc, String(pid), 'stat'), 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? null;
  } catch {
    return null;
  }
}

export function isAlive(pid: number, proc = '/proc'): boolean {
  const s = processState(pid, proc);
  return s !== null && s !== 'Z' && s !== 'X';
}

/**
 * Trust a pid only if it is a QEMU carrying this instance's uuid (and, when known, the same start time).
 */
export function isQemuOf(pid: number, uuid: string, startTicks: number | null, proc = '/proc'): boolean {
  const argv = readCmdline(pid, proc);
  if (!argv || argv.length === 0) return false;
  if (!basename(argv[0]!).startsWith('qemu-system-')) return false;
  const i = argv.indexOf('-uuid');
  if (i < 0 || argv[i + 1] !== uuid) return false;
  if (startTicks !== null && processStartTicks(pid, proc) !== startTicks) return false;
  return isAlive(pid, proc);
}

/** Resident memory of a process in bytes (VmRSS), or null. */
export function residentBytes(pid: number, proc = '/proc'): number | null {
  try {
    const status = readFileSync(join(proc, String(pid), 'status'), 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** The pids in a proc tree (its numeric entries); none when it cannot be read. */
export function listPids(proc = '/proc'): number[] {
  try {
    return readdirSync(proc).filter((e) => /^\d+$/.test(e)).map(Number);
  } catch {
    return [];
  }
}

/** Every live QEMU process that carries this uuid (a last resort when no pid was recorded). */
export function findQemusByUuid(uuid: string, proc = '/proc'): number[] {
  return listPids(proc).filter((pid) => isQemuOf(pid, uuid, null, proc));
}

/**
 * Where a process that does not answer is stuck, for an error message: each thread's state, name and kernel wait
 * channel (/proc/PID/task/TID/{stat,wchan}), e.g. "1234 S poll_schedule_timeout (qemu-storage-d); 1235 D
 * io_schedule (worker)". Empty when the process is gone.
 */
export function stuckThreads(pid: number, proc = '/proc'): string {
  let tids: string[];
  try {
    tids = readdirSync(join(proc, String(pid), 'task')).filter((t) => /^\d+$/.test(t));
  } catch {
    return '';
  }
  const threads: string[] = [];
  for (const tid of tids.slice(0, 16)) {
    const dir = join(proc, String(pid), 'task', tid);
    try {
      const stat = readFileSync(join(dir, 'stat'), 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0] ?? '?';
      let wchan = '?';
      try {
        wchan = readFileSync(join(dir, 'wchan'), 'utf8').trim() || '0';
      } catch {
        /* hidden by the kernel's settings */
      }
      threads.push(`${tid} ${state} ${wchan} (${name})`);
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return threads.join('; ');
}
