/**
 * The audit log file: one JSON line per entry, 0600, appended; rotated past its bound (one .1 kept); a failing
 * disk never throws, is said once, and the log picks up again when writes work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, tailLines, type AuditEntry } from '../../../src/services/audit.js';

function withDir(fn: (dir: string) => void): () => void {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'corral-audit-'));
    try {
      fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const entry = (n: number, extra: Partial<AuditEntry> = {}): AuditEntry => ({
  time: `2026-11-30T13:00:${String(n % 60).padStart(2, '0')}.000Z`, who: 'ci', role: 'operator', via: 'tcp', peer: '10.0.0.5',
  method: 'POST', path: `/v1/instances/web${n}/start`, resource: `web${n}`, status: 200, code: null, ms: 1.5, ...extra,
});

const lines = (file: string): AuditEntry[] => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);

test('entries are JSON lines appended to a 0600 file; a looser mode on an old file is tightened', withDir((dir) => {
  const file = join(dir, 'audit.log');
  writeFileSync(file, `${JSON.stringify(entry(0))}\n`);
  chmodSync(file, 0o644);
  const log = new AuditLog(file);
  log.record(entry(1));
  log.record(entry(2, { status: 409, code: 'INVALID_STATE' }));
  log.close();
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(lines(file), [entry(0), entry(1), entry(2, { status: 409, code: 'INVALID_STATE' })]);
  assert.deepEqual(new AuditLog(file).recent(2), [entry(1), entry(2, { status: 409, code: 'INVALID_STATE' })]);
}));

test('past its bound the log becomes audit.log.1 (one kept) and a new one starts; recent() reads across both', withDir((dir) => {
  const file = join(dir, 'audit.log');
  const one = Buffer.byteLength(`${JSON.stringify(entry(10))}\n`);
  const log = new AuditLog(file, { maxBytes: one * 3 });
  for (let i = 10; i < 17; i++) log.record(entry(i));
  log.close();
  // 3 a file: 10,11,12 went to .1, were replaced by 13,14,15; 16 is the new log's first
  assert.deepEqual(lines(`${file}.1`).map((e) => e.resource), ['web13', 'web14', 'web15']);
  assert.deepEqual(lines(file).map((e) => e.resource), ['web16']);
  assert.ok(statSync(file).size <= one * 3);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.deepEqual(log.recent(3).map((e) => e.resource), ['web14', 'web15', 'web16']);
  assert.deepEqual(log.recent(100).map((e) => e.resource), ['web13', 'web14', 'web15', 'web16']);
}));

test('a write that fails (ENOSPC, then EIO) neither throws nor stops the log: said once, and again once it works', withDir((dir) => {
  const file = join(dir, 'audit.log');
  const said: string[] = [];
  let broken: string | null = null;
  const log = new AuditLog(file, {
    warn: (m) => said.push(m),
    fs: {
      writeSync: (fd, data) => {
        if (broken) throw Object.assign(new Error(`${broken}: simulated`), { code: broken });
        return writeSync(fd, data);
      },
    },
  });
  log.record(entry(1));
  broken = 'ENOSPC';
  assert.doesNotThrow(() => log.record(entry(2)));
  broken = 'EIO';
  assert.doesNotThrow(() => log.record(entry(3)));
  assert.equal(said.length, 1);
  assert.match(said[0]!, /cannot write the audit log .*audit\.log \(ENOSPC: .*\); requests go on, unaudited until it can be written again/);
  broken = null;
  log.record(entry(4));
  log.close();
  assert.equal(said.length, 2);
  assert.match(said[1]!, /audit log .* is written again/);
  assert.deepEqual(lines(file).map((e) => e.resource), ['web1', 'web4']);
}));

test('a real full disk (/dev/full) and a log that is a symlink: not written, never a throw', { skip: existsSync('/dev/full') ? false : 'no /dev/full' }, withDir((dir) => {
  const said: string[] = [];
  const mode = statSync('/dev/full').mode;
  const full = new AuditLog('/dev/full', { warn: (m) => said.push(m) });
  full.record(entry(1));
  full.close();
  assert.equal(said.length, 1);
  assert.match(said[0]!, /ENOSPC/);
  assert.equal(statSync('/dev/full').mode, mode, 'a device keeps its mode');
  const target = join(dir, 'elsewhere');
  writeFileSync(target, '');
  symlinkSync(target, join(dir, 'audit.log'));
  const linked = new AuditLog(join(dir, 'audit.log'), { warn: (m) => said.push(m) });
  linked.record(entry(2));
  assert.equal(readFileSync(target, 'utf8'), '', 'nothing written through the symlink');
  assert.match(said[1]!, /ELOOP/);
}));

test('tailLines reads the last lines from the end, across chunks, whole lines only', withDir((dir) => {
  const file = join(dir, 'big');
  const all = Array.from({ length: 5000 }, (_, i) => `line ${i} ${'é'.repeat(i % 50)}`);
  writeFileSync(file, `${all.join('\n')}\n`);
  assert.deepEqual(tailLines(file, 3), all.slice(-3));
  assert.deepEqual(tailLines(file, 2000), all.slice(-2000));
  assert.deepEqual(tailLines(file, 10_000), all);
  assert.deepEqual(tailLines(join(dir, 'none'), 5), []);
  assert.deepEqual(tailLines(file, 0), []);
}));
