/**
 * The controller's side of a live migration (cluster/migration.ts, Migrator.run) against stand-in agents: the
 * calls in order when it completes; a failure rolls back (the destination removed, the source asked to run on);
 * and the switch-over's edge: a destination whose `finish` answer was lost but that runs the guest is the owner (the
 * source is never resumed), and one that cannot be asked leaves the source paused and the migration marked for the
 * recovery: never two copies. Failure safety: a destination lost while the source sends (its agent gone, its QEMU
 * ended) cancels the migration; a source that fails ends it; a rollback that cannot remove the destination resumes
 * nothing and keeps the mark; the driver's lock is taken first and let go at the end, and a driver that lost it stops
 * acting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { Migrator } from '../../../src/cluster/migration.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import type { DriverLock } from '../../../src/cluster/migration-locks.js';
import type { MigrationFigures } from '../../../src/core/migration.js';
import type { InstanceSpec } from '../../../src/core/spec.js';

const a1 = { name: 'a1', address: 'https://10.0.0.11:8444' } as HostRow;
const a2 = { name: 'a2', address: 'https://10.0.0.12:8444' } as HostRow;

function figures(status: string): MigrationFigures {
  return {
    status, totalMs: 600, downtimeMs: 40, expectedDowntimeMs: 30, setupMs: 5, transferredBytes: 1000, remainingBytes: 0, totalBytes: 2000,
    rate: 100, dirtyRate: 0, passes: 2,
  } as MigrationFigures;
}

interface Script {
  /** what the source's query-migrate says, poll after poll (the last one repeats) */
  statuses: string[];
  /** the destination's finish: answers, or throws */
  finish: 'ok' | 'lost';
  /** the destination's GET of the instance after a lost finish: its state, or unreachable */
  after?: string | 'unreachable';
  /** what the destination's agent says of the incoming instance while the source sends (default: there) */
  destination?: 'there' | 'unreachable' | 'gone' | 'ended';
  /** the destination's DELETE in a rollback cannot reach its host */
  deleteFails?: boolean;
  /** the source's poll fails from this poll on (its QEMU gone: the agent's INVALID_STATE) */
  sourceFailsAt?: number;
  lock?: DriverLock;
}

function harness(s: Script) {
  const calls: string[] = [];
  const done: string[] = [];
  const recorded: Array<{ type: string; data?: Record<string, unknown> }> = [];
  let poll = 0;
  let cancelled = false;
  const unreachable = (h: HostRow): CorralError => new CorralError('HOST_UNAVAILABLE', `host "${h.name}" cannot be reached`, { host: h.name });
  const agents = {
    json: async (h: HostRow, method: string, path: string): Promise<unknown> => {
      const tail = path.replace('/v1/instances/g1', '');
      calls.push(`${h.name} ${method} ${tail || '/'}`);
      if (tail === '/migration/incoming') return { uri: 'tcp:10.0.0.12:49152' };
      if (tail === '/migration' && method === 'POST') return {};
      if (tail === '/migration' && method === 'GET') {
        if (s.sourceFailsAt !== undefined && poll >= s.sourceFailsAt) throw new CorralError('INVALID_STATE', 'instance "g1" is crashed: it must be running', { state: 'crashed' });
        return figures(cancelled ? 'cancelled' : s.statuses[Math.min(poll++, s.statuses.length - 1)]!);
      }
      if (tail === '/migration/cancel') {
        cancelled = true;
        return figures('cancelled');
      }
      if (tail === '/migration/finish' && h === a2) {
        if (s.finish === 'lost') throw unreachable(h);
        return { instance: { name: 'g1', state: 'running' } };
      }
      if (tail === '/migration/finish') return {};
      if (tail === '' && method === 'GET') {
        if (s.after === 'unreachable') throw unreachable(h);
        return { name: 'g1', state: s.after };
      }
      throw new Error(`unexpected ${method} ${path}`);
    },
    call: async (h: HostRow, method: string, path: string) => {
      const tail = path.replace('/v1/instances/g1', '') || '/';
      const reply = (status: number, body: unknown) => ({ status, contentType: 'application/json', body: Buffer.from(JSON.stringify(body)) });
      if (tail === '/migration/facts') {
        const d = s.destination ?? 'there';
        if (d === 'unreachable') throw unreachable(h);
        if (d === 'gone') return reply(404, { error: { code: 'INSTANCE_NOT_FOUND', message: 'no instance "g1"' } });
        return reply(200, { name: 'g1', uuid: 'u', state: d === 'ended' ? 'crashed' : 'paused', run: d === 'ended' ? null : 'inmigrate', migration: 'active', incoming: true });
      }
      calls.push(`${h.name} ${method} ${tail}`);
      if (method === 'DELETE' && s.deleteFails) throw unreachable(h);
      return reply(200, {});
    },
  };
  const instances = {
    completeMigration: async (_n: string, to: string) => { done.push(`complete ${to}`); },
    abortMigration: async () => { done.push('abort'); },
    setView: async () => undefined,
  };
  const quiet = { info: () => undefined, warn: () => undefined };
  const events = { record: async (e: { type: string; data?: Record<string, unknown> }) => { recorded.push(e); } };
  const m = new Migrator({ store: {} as never, instances: instances as never, agents: agents as never, events, log: quiet, pollMs: 1, watch: { everyMs: 1, graceMs: 0 } });
  const run = () => m.run('g1', { options: { maxDowntimeMs: 300, autoConverge: true } as never, timeoutS: 60 }, { from: a1, to: a2, uuid: 'u', spec: {} as InstanceSpec, ...(s.lock ? { lock: s.lock } : {}) }, () => undefined);
  return { calls, done, recorded, run };
}

test('a migration that completes: incoming there, migrate here, polled, the destination runs, then the source ends', async () => {
  const h = harness({ statuses: ['active', 'active', 'completed'], finish: 'ok' });
  const r = await h.run();
  assert.deepEqual([r.from, r.to, r.totalMs, r.downtimeMs, r.passes], ['a1', 'a2', 600, 40, 2]);
  assert.deepEqual(h.calls, [
    'a2 POST /migration/incoming', 'a1 POST /migration', 'a1 GET /migration', 'a1 GET /migration', 'a1 GET /migration',
    'a2 POST /migration/finish', 'a1 POST /migration/finish',
  ]);
  assert.deepEqual(h.done, ['complete a2']);
});

test('a migration QEMU says failed: the destination is removed, the source asked to run on, the reservation given back', async () => {
  const h = harness({ statuses: ['active', 'failed'], finish: 'ok' });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && /runs on host a1/.test(e.message));
  assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'), h.calls.join('\n'));
  assert.ok(h.calls.includes('a1 POST /migration/cancel'));
  assert.ok(!h.calls.includes('a2 POST /migration/finish'), 'the destination never runs');
  assert.deepEqual(h.done, ['abort']);
});

test('the destination\'s finish answer lost, but it runs the guest: it is the owner; the source is never resumed', async () => {
  const h = harness({ statuses: ['completed'], finish: 'lost', after: 'running' });
  const r = await h.run();
  assert.equal(r.to, 'a2');
  assert.ok(!h.calls.some((c) => c.startsWith('a2 DELETE')), h.calls.join('\n'));
  assert.ok(!h.calls.includes('a1 POST /migration/cancel'), 'the source is not resumed');
  assert.ok(h.calls.includes('a1 POST /migration/finish'), 'the source ends');
  assert.deepEqual(h.done, ['complete a2']);
});

test('the destination cannot be asked after the switch-over: the source is left paused, nothing is killed, the mark stays for the recovery', async () => {
  const h = harness({ statuses: ['completed'], finish: 'lost', after: 'unreachable' });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && /left paused/.test(e.message) && (e.details as { outcome?: string }).outcome === 'unknown');
  assert.ok(!h.calls.some((c) => c.startsWith('a2 DELETE')), h.calls.join('\n'));
  assert.ok(!h.calls.includes('a1 POST /migration/cancel'), 'the source is not resumed on a guess');
  assert.ok(!h.calls.includes('a1 POST /migration/resume-source'), 'the source is not resumed on a guess');
  assert.ok(!h.calls.includes('a1 POST /migration/finish'), 'nor ended');
  assert.deepEqual(h.done, [], 'the mark stays: the recovery settles it once a2 answers');
  assert.match(String(h.recorded.find((e) => e.type === 'instance.migration-failed')?.data?.then), /stays marked/);
});

test('the destination answers after a lost finish that it does not run the guest: rolled back as any failure', async () => {
  const h = harness({ statuses: ['completed'], finish: 'lost', after: 'paused' });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'HOST_UNAVAILABLE');
  assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'));
  assert.ok(h.calls.includes('a1 POST /migration/cancel'));
});

test('the destination lost while the source sends (its agent gone, the instance gone, its QEMU ended): cancelled, the source runs on', async () => {
  for (const destination of ['unreachable', 'gone', 'ended'] as const) {
    const h = harness({ statuses: ['active'], finish: 'ok', destination });
    await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && (e.details as { outcome?: string }).outcome === 'destination-lost'
      && /was cancelled: .*a2.*: it runs on host a1/.test(e.message), destination);
    assert.ok(h.calls.includes('a1 POST /migration/cancel'), destination);
    assert.ok(!h.calls.includes('a2 POST /migration/finish'), 'the destination never runs');
    assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'));
    assert.deepEqual(h.done, ['abort'], `${destination}: both sides answered, the mark goes`);
  }
});

test('a rollback that cannot remove the destination resumes no source and keeps the mark for the recovery', async () => {
  const h = harness({ statuses: ['active', 'failed'], finish: 'ok', deleteFails: true });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED');
  assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'));
  assert.ok(!h.calls.includes('a1 POST /migration/resume-source'), 'a completed source would run beside a destination that may still be there');
  assert.deepEqual(h.done, []);
  assert.ok(h.recorded.some((e) => e.type === 'instance.migration-failed'));
});

test('a source that fails while it sends ends the migration (source-lost): the destination is removed, the mark goes', async () => {
  const h = harness({ statuses: ['active'], finish: 'ok', sourceFailsAt: 2 });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && (e.details as { outcome?: string }).outcome === 'source-lost' && /crashed/.test(e.message));
  assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'));
  assert.ok(!h.calls.includes('a2 POST /migration/finish'));
  assert.deepEqual(h.done, ['abort']);
});

test('the driver\'s lock: let go at the end, whatever the outcome; a driver that lost it stops without undoing anything', async () => {
  let released = 0;
  const lock = (lost = false): DriverLock => ({ lost, release: async () => { released++; } });
  await harness({ statuses: ['completed'], finish: 'ok', lock: lock() }).run();
  await assert.rejects(harness({ statuses: ['failed'], finish: 'ok', lock: lock() }).run());
  assert.equal(released, 2);
  const h = harness({ statuses: ['active'], finish: 'ok', lock: lock(true) });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && /lost its database session/.test(e.message));
  assert.ok(!h.calls.some((c) => c.includes('DELETE') || c.includes('cancel')), h.calls.join('\n'));
  assert.deepEqual(h.done, []);
  assert.equal(released, 3);
});

test('a migration whose lock another controller holds is refused before anything is checked or reserved', async () => {
  const m = new Migrator({ store: {} as never, instances: {} as never, agents: {} as never, events: { record: async () => undefined }, log: { info: () => undefined, warn: () => undefined }, locks: { acquire: async () => null } });
  await assert.rejects(m.prepare('g1', { options: {} as never, timeoutS: 60 }), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /being migrated, or its migration recovered/.test(e.message));
});
