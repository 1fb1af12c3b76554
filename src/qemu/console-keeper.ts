/**
 * The console keeper: one small process per running VM that writes its serial console log and keeps it bounded,
 * whether or not the daemon runs.
 *
 * QEMU does not write console.log itself: its serial chardev's `logfile=` is `/dev/fdset/N`, the write end of a
 * pipe QEMU gets as fd 3 (`-add-fd`, see argv.ts). The read end is the keeper's stdin. The keeper appends what it
 * reads to console.log; when the next byte would take the file past the limit, it copies the file over
 * console.log.1 and truncates it, so console.log and console.log.1 each hold at most the limit. It exits on EOF,
 * which comes when QEMU exits (QEMU holds the only write ends: the daemon closes its copy once QEMU is spawned).
 *
 * Why a process of its own: QEMU outlives the daemon (a crash, an upgrade), and a chatty guest must not fill the
 * disk meanwhile. Why perl: it is in perl-base, Essential on Debian, and a perl process costs about 5 MB of memory,
 * against about 40 MB for another Node. It runs as QEMU's user (setpriv, no capabilities, no_new_privs), in a
 * session of its own (it outlives the daemon). That user cannot make files in the root-owned instance dir, so the
 * daemon makes console.log and console.log.1 and gives both to it for the run (services/vm-files.ts): the keeper
 * rotates by copy and truncate, into files that exist.
 *
 * A keeper that dies does not hold QEMU up: QEMU ignores SIGPIPE and drops log writes that fail. A keeper that
 * cannot write (a full disk) drops the bytes and goes on reading. A keeper that stops reading without dying would
 * stall the guest's serial port once the pipe is full, as a stalled disk would have with a plain log file; the
 * keeper asks for a 1 MiB pipe so a rotation's copy never gets near that.
 */
import { type ChildProcess } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, rmSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { plainEnv, run } from '../host/exec.js';
import { spawnAs, type RunAs } from '../host/run-as.js';

/** perl-base: Essential on Debian */
export const PERL = 'perl';
/** what a keeper calls itself in ps: `corral-console-keeper /var/lib/corral/instances/UUID/console.log` */
export const KEEPER_NAME = 'corral-console-keeper';

/** The keeper, the whole program (argv: LOG LIMIT; stdin: the pipe from QEMU). */
export const KEEPER_SCRIPT = String.raw`
# corral console keeper (src/qemu/console-keeper.ts): stdin -> LOG; LOG and LOG.1 (rotatedLog in
# src/core/paths.ts) at most LIMIT bytes each.
use strict;
use Fcntl qw(O_RDONLY O_WRONLY O_APPEND O_TRUNC O_NOFOLLOW);
my ($log, $limit) = @ARGV;
$0 = "${KEEPER_NAME} $log";
$SIG{PIPE} = $SIG{HUP} = 'IGNORE';
fcntl(STDIN, 1031, 1 << 20);  # F_SETPIPE_SZ: 1 MiB of room while a rotation copies (best effort)
sysopen(my $out, $log, O_WRONLY | O_APPEND | O_NOFOLLOW) or die "${KEEPER_NAME}: $log: $!\n";
my $size = (stat $out)[7] // 0;
# LOG -> LOG.1 (the daemon made it and gave it to this user), then LOG emptied in place. Without LOG.1 the old
# part is dropped: the bound comes first.
sub rotate {
  if (sysopen(my $old, "$log.1", O_WRONLY | O_TRUNC | O_NOFOLLOW) and sysopen(my $in, $log, O_RDONLY | O_NOFOLLOW)) {
    my $b;
    while ((sysread($in, $b, 65536) // 0) > 0) { defined(syswrite($old, $b)) or last }
  }
  truncate($out, 0);
  $size = 0;
}
my $buf;
while (1) {
  my $n = sysread(STDIN, $buf, 65536);
  if (!defined $n) { next if $!{EINTR}; last }
  last if $n == 0;  # EOF: QEMU has exited
  my $off = 0;
  while ($off < $n) {
    rotate() if $size >= $limit;
    my $len = $n - $off;
    $len = $limit - $size if $len > $limit - $size;
    my $w = syswrite($out, $buf, $len, $off);
    # a full disk or an I/O error: drop the rest of this chunk and go on reading (QEMU is never held up)
    if (!$w) { $size = (stat $out)[7] // 0; last }
    $off += $w;
    $size += $w;
  }
}
`;

/** perl's argv for a keeper of `log` with `limit`. Pure. */
export function keeperArgv(log: string, limit: number): string[] {
  if (!Number.isSafeInteger(limit) || limit <= 0) throw new CorralError('INTERNAL', `console log limit ${limit} is not a positive byte count`);
  return ['-e', KEEPER_SCRIPT, '--', log, String(limit)];
}

/** The two ends of a pipe, as plain descriptors (close-on-exec: only a child given one in its stdio gets it). */
export interface ConsolePipe {
  read: number;
  write: number;
}

/**
 * A pipe, made as a FIFO at `path` (which must be in a dir only root can write, such as the instance dir), opened
 * at both ends and unlinked: Node has no pipe(2), and its child pipes are socket pairs, which QEMU's fd sets refuse
 * for a write-only log (the access modes must match). Opening the FIFO read-write first (Linux allows it, without
 * blocking) lets both plain ends open without waiting for each other; they are blocking descriptors.
 */
export async function openConsolePipe(path: string): Promise<ConsolePipe> {
  rmSync(path, { force: true }); // left by a daemon killed between mkfifo and unlink
  await run('mkfifo', ['-m', '0600', path], { timeoutMs: 10_000 });
  let rw = -1;
  let write = -1;
  try {
    rw = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW);
    if (!fstatSync(rw).isFIFO()) throw new CorralError('INTERNAL', `${path} is not the FIFO just made: not using it for a console log`);
    write = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    return { read: openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW), write };
  } catch (e) {
    if (write >= 0) closeSync(write);
    throw e;
  } finally {
    if (rw >= 0) closeSync(rw);
    rmSync(path, { force: true });
  }
}

/**
 * Start the keeper of `log`, reading `readFd` (the caller closes its own copy afterwards), as `who` (or the
 * daemon's user when not given: tests), in a session of its own, with nothing else of the daemon's open.
 */
export function startConsoleKeeper(readFd: number, log: string, limit: number, who: RunAs | undefined, warn?: (o: object, m: string) => void): ChildProcess {
  const child = spawnAs(who, PERL, keeperArgv(log, limit), { stdio: [readFd, 'ignore', 'ignore'], detached: true, env: plainEnv() });
  child.on('error', (e) => warn?.({ log, err: e.message }, 'the console keeper could not start: the console log gets no more output'));
  child.on('exit', (code, signal) => {
    if (code !== 0) warn?.({ log, code, signal }, 'the console keeper ended before its VM: the console log gets no more output');
  });
  child.unref();
  return child;
}
