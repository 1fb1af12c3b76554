import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCpuList, readMemInfo, readOnlineCpus } from '../../../src/host/basics.js';

test('CPU lists parse ranges and singles', () => {
  assert.deepEqual(parseCpuList('0-3,6,8-9\n'), [0, 1, 2, 3, 6, 8, 9]);
  assert.throws(() => parseCpuList('0-x'));
});

test('host readers read a fake sysfs and procfs tree', () => {
  const root = mkdtempSync(join(tmpdir(), 'corral-host-'));
  mkdirSync(join(root, 'sys/devices/system/cpu'), { recursive: true });
  mkdirSync(join(root, 'proc'));
  writeFileSync(join(root, 'sys/devices/system/cpu/online'), '0-7\n');
  writeFileSync(join(root, 'proc/meminfo'), 'MemTotal:       16384000 kB\nMemFree:         100 kB\nMemAvailable:    8192000 kB\n');
  assert.equal(readOnlineCpus(join(root, 'sys'), join(root, 'proc')).length, 8);
  assert.deepEqual(readMemInfo(join(root, 'proc')), { total: 16384000 * 1024, available: 8192000 * 1024 });
});
