import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic, writeJsonAtomic } from '../../../src/host/fs-atomic.js';

test('writeJsonAtomic: the whole record, with its mode, replacing the old one; no temporary file left', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-atomic-'));
  const file = join(dir, 'status.json');
  writeJsonAtomic(file, { pid: 1 }, 0o600);
  assert.equal(readFileSync(file, 'utf8'), '{\n  "pid": 1\n}\n');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  writeFileSync(`${file}.tmp-${process.pid}`, 'a crashed write', { mode: 0o666 });
  writeJsonAtomic(file, { pid: 2 }, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { pid: 2 });
  assert.equal(statSync(file).mode & 0o777, 0o600, 'a leftover temporary file does not lend its mode');
  writeFileAtomic(join(dir, 'raw'), Buffer.from([0, 1, 2]));
  assert.deepEqual(readFileSync(join(dir, 'raw')), Buffer.from([0, 1, 2]));
  assert.deepEqual(readdirSync(dir).sort(), ['raw', 'status.json']);
});

test('writeFileAtomic: a failed rename leaves the old state and no temporary file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-atomic-'));
  mkdirSync(join(dir, 'taken', 'inside'), { recursive: true });
  assert.throws(() => writeFileAtomic(join(dir, 'taken'), 'x'), (e: NodeJS.ErrnoException) => ['EISDIR', 'ENOTEMPTY', 'EEXIST'].includes(e.code ?? ''));
  assert.deepEqual(readdirSync(dir), ['taken']);
  fsyncDir(dir);
  fsyncDir(join(dir, 'gone')); // nothing to sync: no error
});
