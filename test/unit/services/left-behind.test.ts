import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leftBehind } from '../../../src/services/left-behind.js';

test('leftBehind: a failed rollback step is a warning naming what was left, not an error', async () => {
  const warned: Array<[object, string | undefined]> = [];
  const log = { warn: (o: object, m?: string) => void warned.push([o, m]) };
  await Promise.reject(new Error('QMP said no')).catch(leftBehind(log, 'netdev net1-net in QEMU', { instance: 'vm' }));
  await Promise.resolve().catch(leftBehind(log, 'nothing'));
  assert.deepEqual(warned, [[{ instance: 'vm', leftBehind: 'netdev net1-net in QEMU', err: 'QMP said no' }, 'could not undo: netdev net1-net in QEMU was left behind']]);
});
