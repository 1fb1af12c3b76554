/**
 * Unplugging a device by id (disks, NICs): it needs the guest's cooperation (ACPI eject) and ends with a
 * DEVICE_DELETED event.
 */
import { CorralError } from '../core/errors.js';
import type { Vm, VmControl, VmEvent } from '../vm/driver.js';

/**
 * device_del `id` and wait until the guest has let it go (DEVICE_DELETED, or the device gone from the QOM
 * tree). TIMEOUT when the guest does not release it: the device then stays, and so must its back end.
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
      if (Date.now() > until) throw new CorralError('TIMEOUT', `the guest did not release ${what} within ${timeoutMs / 1000}s; it stays attached`);
      await new Promise((res) => setTimeout(res, 200));
      if (!done && !(await vm.peripherals()).includes(id)) done = true;
    }
  } finally {
    off();
  }
}
