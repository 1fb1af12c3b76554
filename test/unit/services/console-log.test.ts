import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendBootSeparator, consoleLogHooks, consoleLogLimit, readConsoleLog } from '../../../src/services/console-log.js';
import type { CorralError } from '../../../src/core/errors.js';
import type { LaunchPlan } from '../../../src/qemu/argv.js';
import type { InstanceRow } from '../../../src/store/store.js';

test('the log is the rotated part, then the current file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-log-'));
  try {
    const file = join(dir, 'console.log');
    writeFileSync(`${file}.1`, 'older\r\n');
    writeFileSync(file, 'newer\r\n');
    assert.equal(readConsoleLog(file).toString(), 'older\r\nnewer\r\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CORRAL_CONSOLE_LOG_LIMIT: 1 MiB when not set; a size with a unit of at least 4K otherwise, else INVALID_SPEC', () => {
  assert.equal(consoleLogLimit({}), 1024 * 1024);
  assert.equal(consoleLogLimit({ CORRAL_CONSOLE_LOG_LIMIT: '64K' }), 65536);
  assert.equal(consoleLogLimit({ CORRAL_CONSOLE_LOG_LIMIT: '4096B' }), 4096);
  for (const bad of ['65536', '0K', '4095B', '-1M', 'lots']) {
    assert.throws(() => consoleLogLimit({ CORRAL_CONSOLE_LOG_LIMIT: bad }), (e: CorralError) => e.code === 'INVALID_SPEC' && e.details.field === 'CORRAL_CONSOLE_LOG_LIMIT', bad);
  }
});

test('no log yet reads as empty', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-log-'));
  try {
    appendFileSync(join(dir, 'other'), 'x');
    assert.equal(readConsoleLog(join(dir, 'console.log')).length, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('each start opens with a separator line, on a line of its own even after a boot that ended mid-line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-log-'));
  try {
    const file = join(dir, 'console.log');
    appendBootSeparator(file, new Date('2026-11-30T13:00:00.123Z'), 'tcg');
    assert.equal(readFileSync(file, 'utf8'), '----- corral: QEMU starting 2026-11-30T13:00:00Z (tcg) -----\r\n');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    appendFileSync(file, 'Linux version 6.1\r\n~ # '); // the guest's output, ending at a prompt
    const hook = consoleLogHooks().beforeSpawn!;
    await hook({} as InstanceRow, { accel: 'kvm', paths: { consoleLog: file } } as LaunchPlan);
    assert.match(readFileSync(file, 'utf8'), /^----- corral: QEMU starting 2026-11-30T13:00:00Z \(tcg\) -----\r\nLinux version 6\.1\r\n~ # \r\n----- corral: QEMU starting \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(kvm\) -----\r\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
