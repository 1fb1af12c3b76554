import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { appendBootSeparator, ConsoleLogRotator, consoleLogHooks, readConsoleLog } from '../../../src/services/console-log.js';
import type { LaunchPlan } from '../../../src/qemu/argv.js';
import type { InstanceRow } from '../../../src/store/store.js';

test('the console log stays bounded and keeps the newest bytes, while the writer keeps appending', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-log-'));
  try {
    const file = join(dir, 'console.log');
    // QEMU holds the file open with O_APPEND; so does this stand-in writer.
    const fd = openSync(file, 'a');
    const r = new ConsoleLogRotator(file, 1000);
    for (let i = 0; i < 50; i++) {
      writeSync(fd, `line ${i} ${'x'.repeat(90)}\n`);
      r.rotateNow();
    }
    writeSync(fd, 'last line\n');
    closeSync(fd);
    assert.ok(statSync(file).size <= 1000 + 100);
    assert.ok(statSync(`${file}.1`).size <= 1000 + 100);
    const all = readConsoleLog(file).toString();
    assert.match(all, /line 49 x+\nlast line\n$/);
    assert.doesNotMatch(all, /line 0 /);
    // Appends after a truncate land at the start of the file, not after a hole.
    assert.equal(all.includes('\0'), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
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
