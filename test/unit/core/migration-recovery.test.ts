/**
 * The recovery rules of a live migration nobody drives (core/migration-recovery.ts), over every combination of what
 * the two sides can say: the expected decision of each pair of kinds as a table written here, and the safety
 * rules checked on every pair (a destination is resumed only when its source completed or is dead; a source only
 * when its destination is gone; nothing is resumed on a host's silence; a destination that runs is never removed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideRecovery, migrationUnderWay, pausedByMigration, type SideFacts } from '../../../src/core/migration-recovery.js';

const there = (run: string | null, migration: string, incoming = false): SideFacts => ({ kind: 'there', run, migration, incoming });

/** What a source can say, by the kind the rules see in it. */
const SOURCES: Record<string, SideFacts[]> = {
  migrating: [there('running', 'active'), there('running', 'setup'), there('finish-migrate', 'device'), there('running', 'postcopy-active'), there('running', 'cancelling')],
  'handed-over': [there('postmigrate', 'completed')],
  'runs-on': [there('running', 'failed'), there('running', 'cancelled'), there('running', 'completed'), there('running', 'none'), there('paused', 'none'), there('paused', 'failed')],
  dead: [{ kind: 'gone' }, there(null, 'none')],
  unknown: [{ kind: 'unknown' }],
};

/** What a destination can say, by kind. */
const DESTINATIONS: Record<string, SideFacts[]> = {
  runs: [there('running', 'completed', true), there('running', 'completed'), there('paused', 'completed'), there('paused', 'none'), there('running', 'postcopy-active', true)],
  arrived: [there('paused', 'completed', true)],
  receiving: [there('inmigrate', 'active', true), there('inmigrate', 'none', true), there('inmigrate', 'setup', false)],
  dead: [{ kind: 'gone' }, there(null, 'none', true), there(null, 'none')],
  unknown: [{ kind: 'unknown' }],
  unclear: [there('paused', 'failed', true), there('paused', 'none', true)],
};

type Expect = 'wait' | 'complete' | 'complete+resume-destination' | 'rollback' | 'rollback+resume-source' | 'cancel';
const S_ORDER = ['migrating', 'handed-over', 'runs-on', 'dead', 'unknown'] as const;
/** rows: the destination's kind; columns: the source's, in S_ORDER */
const TABLE: Record<string, Expect[]> = {
  runs: ['wait', 'complete', 'wait', 'complete', 'complete'],
  arrived: ['wait', 'complete+resume-destination', 'rollback', 'complete+resume-destination', 'wait'],
  receiving: ['cancel', 'wait', 'rollback', 'rollback', 'wait'],
  dead: ['cancel', 'rollback+resume-source', 'rollback', 'rollback', 'wait'],
  unknown: ['cancel', 'wait', 'rollback', 'wait', 'wait'],
  unclear: ['cancel', 'wait', 'rollback', 'wait', 'wait'],
};

function shown(d: ReturnType<typeof decideRecovery>): Expect {
  if (d.resumeDestination) return 'complete+resume-destination';
  if (d.resumeSource) return 'rollback+resume-source';
  return d.action;
}

test('every pair of what the two sides say gets the decision of the table', () => {
  let pairs = 0;
  for (const [dKind, dList] of Object.entries(DESTINATIONS)) {
    for (const [i, sKind] of S_ORDER.entries()) {
      for (const d of dList) {
        for (const s of SOURCES[sKind]!) {
          const got = decideRecovery(s, d);
          assert.equal(shown(got), TABLE[dKind]![i], `destination ${dKind} ${JSON.stringify(d)}, source ${sKind} ${JSON.stringify(s)}: ${got.reason}`);
          assert.ok(got.reason.length > 20, 'the decision says why');
          pairs++;
        }
      }
    }
  }
  assert.ok(pairs > 150, `${pairs} pairs`);
});

test('the safety rules hold on every pair: never two copies, nothing resumed on a guess', () => {
  const all = (o: Record<string, SideFacts[]>): Array<[string, SideFacts]> => Object.entries(o).flatMap(([k, l]) => l.map((f): [string, SideFacts] => [k, f]));
  for (const [dKind, d] of all(DESTINATIONS)) {
    for (const [sKind, s] of all(SOURCES)) {
      const got = decideRecovery(s, d);
      const at = `destination ${dKind}, source ${sKind}`;
      // a destination runs only with the whole guest and a source that will never run again
      if (got.resumeDestination) assert.ok(dKind === 'arrived' && (sKind === 'handed-over' || sKind === 'dead'), at);
      // a source runs again only once its destination is known to hold no live QEMU
      if (got.resumeSource) assert.ok(dKind === 'dead' && sKind === 'handed-over', at);
      if (got.action === 'complete') assert.ok(dKind === 'runs' || dKind === 'arrived', at);
      // a destination that runs is never removed, and one that may run is never overridden by a resumed source
      if (dKind === 'runs') assert.notEqual(got.action, 'rollback', at);
      if (dKind === 'unknown' || dKind === 'unclear') assert.ok(!got.resumeSource && got.action !== 'complete', at);
      if (sKind === 'unknown') assert.ok(!got.resumeDestination && !got.resumeSource && got.action !== 'rollback', at);
      if (got.action === 'cancel') assert.equal(sKind, 'migrating', at);
      if (got.action !== 'complete') assert.equal(got.resumeDestination, false, at);
      if (got.action !== 'rollback') assert.equal(got.resumeSource, false, at);
    }
  }
});

test('the reasons name both sides in words', () => {
  const d = decideRecovery(there('running', 'active'), there('inmigrate', 'active', true));
  assert.equal(d.action, 'cancel');
  assert.match(d.reason, /destination is still receiving \(inmigrate\) and the source still sends the guest: the migration is cancelled/);
  const c = decideRecovery(there('postmigrate', 'completed'), there('paused', 'completed', true));
  assert.match(c.reason, /holds the whole guest, paused and the source completed and waits paused \(postmigrate\): the destination is resumed/);
  assert.match(decideRecovery({ kind: 'unknown' }, there('paused', 'completed', true)).reason, /source's host does not answer/);
});

test('QEMU\'s migration statuses and run states', () => {
  for (const s of ['none', 'completed', 'failed', 'cancelled']) assert.equal(migrationUnderWay(s), false, s);
  for (const s of ['setup', 'active', 'device', 'pre-switchover', 'postcopy-active', 'cancelling', 'wait-unplug']) assert.equal(migrationUnderWay(s), true, s);
  for (const s of ['inmigrate', 'postmigrate', 'finish-migrate']) assert.equal(pausedByMigration(s), true, s);
  for (const s of ['running', 'paused', 'io-error', 'prelaunch']) assert.equal(pausedByMigration(s), false, s);
});
