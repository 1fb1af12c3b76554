/** Unplugging a device: asked of a running guest and waited for; refused, with nothing asked, while it is paused. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { unplugDevice } from '../../../src/services/qmp-devices.js';
import type { VmEvent } from '../../../src/vm/driver.js';

/** A VM with the devices `present`, in run state `status`; device_del is answered by DEVICE_DELETED a moment later. */
function fakeVm(status: string, present: string[]) {
  const sent: string[] = [];
  const listeners: Array<(ev: VmEvent) => void> = [];
  const vm = {
    status: async () => ({ status, running: status === 'running' }),
    peripherals: async () => [...present],
    deviceDel: async (id: string) => {
      sent.push(id);
      setTimeout(() => {
        present.splice(present.indexOf(id), 1);
        for (const l of listeners) l({ event: 'DEVICE_DELETED', data: { device: id } } as VmEvent);
      }, 10);
    },
    onEvent: (l: (ev: VmEvent) => void) => {
      listeners.push(l);
      return () => listeners.splice(listeners.indexOf(l), 1);
    },
  };
  return { vm: vm as never, sent, present };
}

test('a running guest releases the device: device_del, then it is gone', async () => {
  const f = fakeVm('running', ['vol-a', 'vol-b']);
  await unplugDevice(f.vm, 'vol-a', 5000);
  assert.deepEqual(f.sent, ['vol-a']);
  assert.deepEqual(f.present, ['vol-b']);
});

test('a paused guest: INVALID_STATE (paused), and no device_del is left pending for its resume', async () => {
  const f = fakeVm('paused', ['vol-a']);
  await assert.rejects(unplugDevice(f.vm, 'vol-a', 5000, 'disk vol-a'), (e) => {
    assert.ok(e instanceof CorralError);
    assert.equal(e.code, 'INVALID_STATE');
    assert.equal(e.details.state, 'paused');
    assert.match(e.message, /paused .*cannot release disk vol-a now; resume it first/);
    return true;
  });
  assert.deepEqual(f.sent, []);
  assert.deepEqual(f.present, ['vol-a']);
});

test('a device that is not there is already unplugged: nothing is asked', async () => {
  const f = fakeVm('paused', []);
  await unplugDevice(f.vm, 'vol-a', 5000);
  assert.deepEqual(f.sent, []);
});
