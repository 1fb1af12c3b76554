/**
 * Who the processes that touch guests run as. QEMU and qemu-storage-daemon run as the system user `corral-qemu`
 * (primary group `corral-qemu`, the group the guest fence matches), never root: an escape through an emulated
 * device lands in an account that owns nothing but the files of running VMs. dnsmasq drops to its own system
 * user `corral-dnsmasq` once its sockets are bound (it keeps only the network capabilities DHCP needs).
 *
 * QEMU is started through util-linux's `setpriv`, which execs it (same pid) as that user with no supplementary
 * groups but `kvm` (for /dev/kvm and /dev/vhost-net where udev gives them to that group), no capabilities in any
 * set (the bounding set emptied too) and no_new_privs. Files are given to the user for a run and taken back after
 * through descriptors opened with O_NOFOLLOW, so a symlink planted where a file should be is never followed.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { closeSync, constants, fchmodSync, fchownSync, fstatSync, openSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { CorralError } from '../core/errors.js';
import { run } from './exec.js';

export const QEMU_USER = 'corral-qemu';
export const DNSMASQ_USER = 'corral-dnsmasq';
/** the program that drops to the user, with its flags (util-linux, Essential on Debian) */
export const SETPRIV = 'setpriv';
export const PRLIMIT = 'prlimit';

/** An unprivileged identity a child process runs as. */
export interface RunAs {
  user: string;
  uid: number;
  gid: number;
  /** supplementary groups (kvm where it exists) */
  groups: number[];
}

async function lookup(db: 'passwd' | 'group', name: string): Promise<string[] | null> {
  try {
    return (await run('getent', [db, name], { timeoutMs: 10_000 })).stdout.trim().split(':');
  } catch (e) {
    if (e instanceof CorralError && e.code === 'MISSING_TOOL') throw e;
    return null; // getent says 2: not there
  }
}

/** A positive id from a getent line's field, or null. */
function idOf(fields: string[] | null, i: number): number | null {
  const n = Number(fields?.[i]);
  return Number.isInteger(n) && n > 0 ? n : null;
}

/** The uid and gid of a system user with a group of its own name, made (useradd --system) the first time. */
export async function ensureSystemUser(name: string): Promise<{ uid: number; gid: number }> {
  const find = async (): Promise<{ uid: number; gid: number } | null> => {
    const p = await lookup('passwd', name);
    const uid = idOf(p, 2);
    const gid = idOf(p, 3);
    return uid !== null && gid !== null ? { uid, gid } : null;
  };
  let found = await find();
  if (found === null) {
    const hasGroup = idOf(await lookup('group', name), 2) !== null; // a group made by an earlier Corral: keep it
    let why = '';
    try {
      await run('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin',
        ...(hasGroup ? ['--gid', name] : ['--user-group']), '--comment', 'Corral guest processes', name], { timeoutMs: 30_000 });
    } catch (e) {
      if (e instanceof CorralError && e.code === 'MISSING_TOOL') throw e;
      why = `: ${(e as Error).message}`; // or made meanwhile by a concurrent start: the lookup below settles it
    }
    found = await find();
    if (found === null) throw new CorralError('INVALID_CONFIG', `cannot find or make the system user ${name} that Corral runs guests' processes as${why}`, { user: name });
  }
  return found;
}

let qemu: Promise<RunAs> | null = null;

/** QEMU's identity: `corral-qemu`, with the kvm group where the host has one. Made once per daemon. */
export function qemuRunAs(): Promise<RunAs> {
  qemu ??= (async () => {
    const { uid, gid } = await ensureSystemUser(QEMU_USER);
    const kvm = idOf(await lookup('group', 'kvm'), 2);
    return { user: QEMU_USER, uid, gid, groups: kvm === null ? [] : [kvm] };
  })();
  qemu.catch(() => { qemu = null; });
  return qemu;
}

/**
 * `setpriv` and its arguments to run `binary argv` as `who`. Pure. `memlock`: bytes the program may lock (QEMU
 * with VFIO devices pins all guest memory, which an unprivileged process may not do past RLIMIT_MEMLOCK): util-linux
 * `prlimit` sets it while still root, then execs setpriv.
 */
export function setprivArgv(who: RunAs, binary: string, argv: string[], opts: { memlock?: number } = {}): [string, string[]] {
  if (!(who.uid > 0 && who.gid > 0)) throw new CorralError('INTERNAL', `refusing to run ${binary} as uid ${who.uid} gid ${who.gid}: not an unprivileged identity`);
  if (opts.memlock !== undefined) {
    if (!Number.isSafeInteger(opts.memlock) || opts.memlock <= 0) throw new CorralError('INTERNAL', `memlock limit ${opts.memlock} is not a positive byte count`);
    const [bin, args] = setprivArgv(who, binary, argv);
    return [PRLIMIT, [`--memlock=${opts.memlock}:${opts.memlock}`, '--', bin, ...args]];
  }
  return [SETPRIV, [
    `--reuid=${who.uid}`, `--regid=${who.gid}`,
    who.groups.length > 0 ? `--groups=${who.groups.join(',')}` : '--clear-groups',
    '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs',
    '--', binary, ...argv,
  ]];
}

/** spawn `binary argv` as `who` (through setpriv), or as the daemon's own user when `who` is not given. */
export function spawnAs(who: RunAs | undefined, binary: string, argv: string[], opts: SpawnOptions): ChildProcess {
  const [bin, args] = who ? setprivArgv(who, binary, argv) : [binary, argv];
  return spawn(bin, args, opts);
}

/** Set owner and mode through a descriptor (O_NOFOLLOW: a symlink is refused, never followed); skip what is set. */
export function ownAs(path: string, uid: number, gid: number, mode: number, create = false): void {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (create ? constants.O_CREAT : 0), 0o600);
  try {
    const st = fstatSync(fd);
    if (!st.isFile() && !st.isDirectory()) throw new CorralError('INTERNAL', `${path} is neither a file nor a directory: not handing it to a guest's process`);
    if (st.uid !== uid || st.gid !== gid) fchownSync(fd, uid, gid);
    if ((st.mode & 0o7777) !== mode) fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
}

/** Give a file (0600) or directory (0700) to `who` for a run; `create` makes a missing file. */
export function giveTo(who: RunAs, path: string, opts: { dir?: boolean; create?: boolean } = {}): void {
  ownAs(path, who.uid, who.gid, opts.dir ? 0o700 : 0o600, opts.create);
}

/** Let `who` read a file it must not write (the source of a clone it runs): root-owned, group-readable 0640. */
export function lendTo(who: RunAs, path: string): void {
  ownAs(path, 0, who.gid, 0o640);
}

/** Take a file back: root-owned, 0600. A missing file is fine (nothing to take back). */
export function takeBack(path: string): void {
  try {
    ownAs(path, 0, 0, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * The data dir must be reachable by QEMU's user: every directory above it searchable by others (the data dir
 * itself is made 0711 by the daemon). Otherwise QEMU could not open a single file of its VM: refuse to start.
 */
export function assertReachable(dataDir: string, who: RunAs): void {
  const parts = resolve(dataDir).split('/').filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const st = statSync(dir);
    const x = st.uid === who.uid ? 0o100 : st.gid === who.gid || who.groups.includes(st.gid) ? 0o010 : 0o001;
    if ((st.mode & x) === 0) {
      throw new CorralError('INVALID_CONFIG', `the data dir ${dataDir} is not reachable by ${who.user}, the user QEMU runs as: ${dir} is not searchable by it (mode ${(st.mode & 0o7777).toString(8)}); chmod o+x ${dir}, or choose a data dir under a searchable path`, { dir, user: who.user });
    }
  }
}

/**
 * Can this daemon give a child a RLIMIT_MEMLOCK of `bytes`? Root can raise a hard limit only with CAP_SYS_RESOURCE
 * in the initial user namespace: in a container it may not. Asked of prlimit itself (it fails as the launch would).
 */
export async function canRaiseMemlock(bytes: number): Promise<boolean> {
  try {
    await run(PRLIMIT, [`--memlock=${bytes}:${bytes}`, '--', 'true'], { timeoutMs: 10_000 });
    return true;
  } catch (e) {
    if (e instanceof CorralError && e.code === 'MISSING_TOOL') throw e;
    return false;
  }
}
