/**
 * QMP helpers shared by the hotplug code (disks, NICs, host devices): what is plugged in, and unplugging a
 * device by id, which needs the guest's cooperation (ACPI eject) and ends with a DEVICE_DELETED event.
 */
import { CorralError } from '../core/errors.js';
import type { QmpClient, QmpEvent } from '../qemu/qmp.js';

/** The ids of the user-created devices (QOM children of /machine/peripheral). */
export async function peripherals(qmp: QmpClient): Promise<string[]> {
  const list = await qmp.execute<Array<{ name: string; type: string }>>('qom-list', { path: '/machine/peripheral' });
  return list.filter((p) => p.type.startsWith('child<')).map((p) => p.name);
}

/** The ids of user-created objects (iothreads, memory backends: QOM children of /objects). */
export async function qomObjects(qmp: QmpClient): Promise<string[]> {
  const list = await qmp.execute<Array<{ name: string; type: string }>>('qom-list', { path: '/objects' });
  return list.filter((p) => p.type.startsWith('child<')).map((p) => p.name);
}

/**
 * device_del `id` and wait until the guest has let it go (DEVICE_DELETED, or the device gone from the QOM
 * tree). TIMEOUT when the guest does not release it: the device then stays, and so must its back end.
 */
export async function unplugDevice(qmp: QmpClient, id: string, timeoutMs: number, what = `device ${id}`): Promise<void> {
  let done = false;
  const onEvent = (ev: QmpEvent): void => {
    if (ev.event === 'DEVICE_DELETED' && ev.data.device === id) done = true;
  };
  qmp.on('event', onEvent);
  try {
    if (!(await peripherals(qmp)).includes(id)) return;
    await qmp.execute('device_del', { id });
    const until = Date.now() + timeoutMs;
    while (!done) {
      if (Date.now() > until) throw new CorralError('TIMEOUT', `the guest did not release ${what} within ${timeoutMs / 1000}s; it stays attached`);
      await new Promise((res) => setTimeout(res, 200));
      if (!done && !(await peripherals(qmp)).includes(id)) done = true;
    }
  } finally {
    qmp.off('event', onEvent);
  }
}
