/**
 * Unplugging a device by id (disks, NICs): it needs the guest's cooperation (ACPI eject) and ends with a
 * DEVICE_DELETED event.
 */
import { CorralError } from '../core/errors.js';
import type { Vm, VmControl, VmEvent } from '../vm/driver.js';

/**
 * device_del `id` and wait until the guest has let it go (DEVICE_DELETED, or the device gone from the QOM
 * tree). TIMEOUT when the guest does not release it: the device then stays, and so must its back end (the
 * caller's watch, onLateUnplug, finishes the detach should the guest release it later).
 * INVALID_STATE, with nothing asked of QEMU, when the guest is paused: it cannot answer now, and a request left
 * pending would be carried out when it resumes, behind the back of records that say the device stayed.
 */
export async function unplugDevice(vm: VmControl & Pick<Vm, 'onEvent'>, id: string, timeoutMs: number, what = `device ${id}`): Promise<void> {
  let done = false;
  const off = vm.onEvent((ev: VmEvent) => {
    if (ev.event === 'DEVICE_DELETED' && ev.data.device === id) done = true;
  });
  try {
    if (!(await vm.peripherals()).includes(id)) return;
    const st = await vm.status();
    if (!st.running) {
      throw new CorralError('INVALID_STATE', `the guest is paused (${st.status}): it cannot release ${what} now; resume it first, or stop the instance`, { state: 'paused' });
    }
    await vm.deviceDel(id);
    const until = Date.now() + timeoutMs;
    while (!done) {
      if (Date.now() > until) throw new CorralError('TIMEOUT', `the guest did not release ${what} within ${timeoutMs / 1000}s; it stays attached; should the guest release it later, the detach is finished then`);
      await new Promise((res) => setTimeout(res, 200));
      if (!done && !(await vm.peripherals()).includes(id)) done = true;
    }
  } finally {
    off();
  }
}

/**
 * Watch a VM for devices the guest releases on its own, late: a guest that did not answer an unplug in time (one
 * still booting) may carry it out later, after the detach answered TIMEOUT and the records kept the device. Each
 * DEVICE_DELETED of an id `owns` claims goes to `finish` (which checks the records under its locks); a failure
 * is given to `warn`.
 */
export function onLateUnplug(vm: Pick<Vm, 'onEvent'>, owns: (id: string) => boolean, finish: (id: string) => Promise<void>, warn: (id: string, e: Error) => void): void {
  vm.onEvent((ev: VmEvent) => {
    const id = ev.event === 'DEVICE_DELETED' ? ev.data?.device : undefined;
    if (typeof id !== 'string' || !owns(id)) return;
    void finish(id).catch((e: Error) => warn(id, e));
  });
}
