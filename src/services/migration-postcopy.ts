/**
 * Postcopy on a host (`corral migrate --postcopy`; the rule of when to switch is core/migration-transport.ts's
 * shouldStartPostcopy, applied by the controller):
 * - the destination sets the postcopy-ram capability on its incoming QEMU before it listens: QEMU tests there and
 *   then that it can use userfaultfd, so a host where it cannot (an unprivileged QEMU with
 *   vm.unprivileged_userfaultfd 0, as Corral's) refuses the migration up front, POSTCOPY_UNAVAILABLE saying why,
 *   before anything moves;
 * - the source sets postcopy-ram too (with the other capabilities) and switches when the controller asks;
 * - the destination's QEMU (started with -S) stays paused when the switch reaches it (it has taken its disks over
 *   then); the controller, seeing postcopy-active on the source, asks it to run the guest (`cont`) while the rest
 *   of the pages come. (A `cont` earlier, while inmigrate, would make QEMU take the shared disk's lock, which the
 *   source still holds: QEMU 7.2 refuses it.)
 * After the switch the destination owns the guest: nothing is rolled back (the source's QEMU, paused, never runs
 * again by Corral's hand, and a cancel is refused); services/migration.ts keeps to that.
 */
import { readFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { postcopyUnavailable } from '../core/migration-transport.js';
import type { VmControl } from '../vm/driver.js';

const SYSCTL = '/proc/sys/vm/unprivileged_userfaultfd';

/** vm.unprivileged_userfaultfd ('0' or '1'), or null where the kernel has no such setting. */
export function unprivilegedUserfaultfd(file = SYSCTL): string | null {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** The destination's part before it listens (see the file's comment); POSTCOPY_UNAVAILABLE when QEMU refuses. */
export async function prepareIncomingPostcopy(vm: VmControl, host: string): Promise<void> {
  try {
    await vm.migrateSetCapabilities({ 'postcopy-ram': true });
  } catch (e) {
    // QEMU's refusal (QEMU_FAILED, "Postcopy is not supported"); a QEMU gone or silent is not the host's postcopy
    if (!(e instanceof CorralError) || e.code !== 'QEMU_FAILED') throw e;
    throw postcopyUnavailable(host, e.message.replace(/^QEMU refused [^:]+: /, ''), unprivilegedUserfaultfd());
  }
}
