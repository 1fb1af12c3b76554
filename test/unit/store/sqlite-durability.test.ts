/** The store is durable (synchronous=FULL in WAL mode) and the daemon's alone (0600, even if an older daemon made it 0644). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../../src/store/sqlite.js';

test('the database is opened with synchronous=FULL in WAL mode, and made 0600', () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-db-'));
  try {
    const file = join(dir, 'corral.db');
    new SqliteStore(file).close();
    chmodSync(file, 0o644); // as an older daemon under umask 022 left it
    const store = new SqliteStore(file);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const raw = (store as unknown as { db: Database.Database }).db;
    assert.equal(raw.pragma('synchronous', { simple: true }), 2, 'FULL');
    assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
    store.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
