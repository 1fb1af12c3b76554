/** A running VM's monitor as the disk and NIC services' hooks see it: its devices, its events, the commands sent. */
type Listener = (ev: { event: string; data: Record<string, unknown> }) => void;

export function watchedVm(devices: string[]) {
  const sent: string[] = [];
  const listeners: Listener[] = [];
  const record = (command: string) => async (arg: string): Promise<void> => { sent.push(`${command} ${arg}`); };
  const vm = {
    onEvent: (l: Listener) => { listeners.push(l); return () => undefined; },
    peripherals: async () => [...devices],
    objects: async () => [] as string[],
    blockdevDel: record('blockdev-del'),
    objectDel: record('object-del'),
    netdevDel: record('netdev_del'),
    chardevRemove: record('chardev-remove'),
  };
  /** QEMU's DEVICE_DELETED of `device`; `gone` false: a device of that id is back (plugged in again since) */
  const emit = (device: string, gone = true): void => {
    if (gone && devices.includes(device)) devices.splice(devices.indexOf(device), 1);
    for (const l of listeners) l({ event: 'DEVICE_DELETED', data: { device } });
  };
  return { vm, sent, emit };
}
