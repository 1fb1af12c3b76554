/**
 * The host watchdog of a cluster agent: it covers an agent that died or hangs while its HA instances run on.
 *
 * The agent pets it at every heartbeat tick (from its own event loop, whether the controller answers or not):
 * it writes the pids (and start times) of its running HA instances to cluster/ha-pids and touches
 * cluster/watchdog.pet, whose content is the watchdog's timeout in ms. A separate small process, `corral-watchdog
 * DIR` (perl, in perl-base; root, in a session of its own, so it outlives the agent), checks the pet file's age four
 * times a second: once it is older than the timeout, it SIGKILLs every listed pid whose start time still matches
 * (a pid reused since is left alone) and notes it in cluster/watchdog.fired. The controller starts an HA instance
 * elsewhere only after the host's lease and this timeout have both run out, so by then the old copy is dead.
 *
 * On a real host, CORRAL_WATCHDOG_DEVICE=/dev/watchdog makes every pet also write to the hardware watchdog, which
 * resets the whole machine when the agent stops petting it (as Proxmox's watchdog-mux does); test hosts have none.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { PERL } from '../qemu/console-keeper.js';
import { plainEnv } from '../host/exec.js';

export const WATCHDOG_NAME = 'corral-watchdog';

const SCRIPT = String.raw`
use strict;
use Time::HiRes qw(time sleep stat);
my ($dir) = @ARGV;
$0 = "${WATCHDOG_NAME} $dir";
$SIG{PIPE} = $SIG{HUP} = 'IGNORE';
my $fired = 0;
sub start_ticks { my ($pid) = @_; open(my $f, '<', "/proc/$pid/stat") or return ''; my $s = <$f>; $s =~ s/^.*\) //; return (split / /, $s)[19] // '' }
while (1) {
  exit 0 unless -d $dir;
  my @st = stat("$dir/watchdog.pet");
  if (@st) {
    my $timeout = 10000;
    if (open(my $p, '<', "$dir/watchdog.pet")) { my $t = <$p>; $timeout = $t if defined $t && $t =~ /^\d+$/ }
    if ((time - $st[9]) * 1000 > $timeout) {
      if (!$fired) {
        my @killed;
        if (open(my $l, '<', "$dir/ha-pids")) {
          while (my $line = <$l>) {
            my ($pid, $ticks) = split ' ', $line;
            next unless defined $pid && $pid =~ /^\d+$/;
            next if defined $ticks && $ticks ne '-' && start_ticks($pid) ne $ticks;
            push @killed, $pid if kill('KILL', $pid);
          }
        }
        if (open(my $o, '>', "$dir/watchdog.fired")) { print $o time(), ' ', join(',', @killed), "\n" }
        $fired = 1;
      }
    } else { $fired = 0 }
  }
  sleep 0.25;
}
`;

export interface HaPid { pid: number; startTicks: number | null }

/** The watchdog for an agent's data dir: the running one, or a new one (detached: it outlives the agent). */
export function ensureWatchdog(clusterDir: string): number | null {
  mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  const pidFile = join(clusterDir, 'watchdog.pid');
  try {
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (cmd.startsWith(`${WATCHDOG_NAME} ${clusterDir}`)) return pid;
  } catch {
    /* none, or gone */
  }
  const child = spawn(PERL, ['-e', SCRIPT, clusterDir], { detached: true, stdio: 'ignore', env: plainEnv() });
  child.unref();
  if (child.pid === undefined) return null;
  writeFileSync(pidFile, String(child.pid), { mode: 0o600 });
  return child.pid;
}

export class WatchdogPet {
  private device: number | null | undefined;

  constructor(private readonly clusterDir: string, private readonly deviceFile = process.env.CORRAL_WATCHDOG_DEVICE) {}

  /** Pet: the HA pids to kill if the pets stop, and the timeout, then the pet file's mtime. */
  pet(timeoutMs: number, ha: HaPid[]): void {
    const list = join(this.clusterDir, 'ha-pids');
    writeFileSync(`${list}.tmp`, ha.map((h) => `${h.pid} ${h.startTicks ?? '-'}\n`).join(''), { mode: 0o600 });
    renameSync(`${list}.tmp`, list);
    writeFileSync(join(this.clusterDir, 'watchdog.pet'), `${Math.round(timeoutMs)}\n`, { mode: 0o600 });
    if (this.deviceFile) {
      if (this.device === undefined) this.device = existsSync(this.deviceFile) ? openSync(this.deviceFile, 'w') : null;
      if (this.device !== null) writeSync(this.device, 'k');
    }
  }

  /** When the watchdog last fired (ms since the epoch) and the pids it killed; null if it never did. */
  fired(): { at: number; pids: number[] } | null {
    try {
      const [at, pids] = readFileSync(join(this.clusterDir, 'watchdog.fired'), 'utf8').trim().split(' ');
      return { at: Number(at) * 1000, pids: (pids ?? '').split(',').filter(Boolean).map(Number) };
    } catch {
      return null;
    }
  }

  /** On an orderly stop: the magic close ('V') disarms a hardware watchdog, which would reset the machine otherwise. */
  close(): void {
    if (typeof this.device === 'number') {
      writeSync(this.device, 'V');
      closeSync(this.device);
    }
    this.device = undefined;
  }
}
