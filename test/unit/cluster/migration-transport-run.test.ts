/**
 * The controller's run of a migration (cluster/migration.ts) with its transport, against stand-in agents: the TLS
 * material of the plan goes to each side's step and the result says `tls`; `--postcopy` switches once the first
 * pass is done, never before, and a failure after the switch rolls nothing back (the destination is not removed,
 * the source not asked to run on) and says so (outcome postcopy-failed); a timeout does not cancel after the switch.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { Migrator } from '../../../src/cluster/migration.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import type { MigrationFigures } from '../../../src/core/migration.js';
import type { InstanceSpec } from '../../../src/core/spec.js';
import type { TransportPlan } from '../../../src/cluster/migration-transport.js';

const a1 = { name: 'a1', address: 'https://10.0.0.11:8444' } as HostRow;
const a2 = { name: 'a2', address: 'https://10.0.0.12:8444' } as HostRow;

type Poll = [status: string, passes: number];

function figures([status, passes]: Poll): MigrationFigures {
  return { status, totalMs: 600, downtimeMs: 40, expectedDowntimeMs: 30, setupMs: 5, transferredBytes: 1000, remainingBytes: 0, totalBytes: 2000, rate: 100, dirtyRate: 0, passes, error: null };
}

const PLAN: TransportPlan = {
  tls: true,
  incoming: { tls: { caPem: 'CA', certPem: 'SRV', keyPem: 'SRVKEY', peer: 'CN=a1,O=corral-migration,OU=00112233445566aa' } },
  start: { tls: { caPem: 'CA', certPem: 'CLI', keyPem: 'CLIKEY', peer: 'a2' } },
};

function harness(polls: Poll[], o: { postcopy?: boolean; transport?: TransportPlan; postcopyAnswer?: 'ok' | 'refused' | 'lost'; timeoutS?: number } = {}) {
  const calls: string[] = [];
  const bodies: Record<string, unknown> = {};
  /** `kept`: recorded with the migration's mark left on the row, for the recovery (not aborted) */
  const events: Array<{ type: string; data: Record<string, unknown>; kept?: boolean }> = [];
  let poll = 0;
  const agents = {
    json: async (h: HostRow, method: string, path: string, body?: unknown): Promise<unknown> => {
      const tail = path.replace('/v1/instances/g1', '');
      calls.push(`${h.name} ${method} ${tail || '/'}`);
      bodies[`${h.name} ${method} ${tail}`] = body;
      if (tail === '/migration/incoming') return { uri: 'tcp:10.0.0.12:49152' };
      if (tail === '/migration' && method === 'POST') return {};
      if (tail === '/migration' && method === 'GET') return figures(polls[Math.min(poll++, polls.length - 1)]!);
      if (tail === '/migration/postcopy') {
        if (o.postcopyAnswer === 'refused') throw new CorralError('QEMU_FAILED', 'QEMU refused migrate-start-postcopy: no');
        if (o.postcopyAnswer === 'lost') throw new CorralError('HOST_UNAVAILABLE', 'host "a1" cannot be reached');
        return {};
      }
      if (tail === '/migration/cancel') return figures(['cancelled', 1]);
      if (tail === '/migration/finish' && h === a2) return { instance: { name: 'g1', state: 'running' } };
      if (tail === '/migration/finish') return {};
      throw new Error(`unexpected ${method} ${path}`);
    },
    call: async (h: HostRow, method: string, path: string) => {
      calls.push(`${h.name} ${method} ${path.replace('/v1/instances/g1', '') || '/'}`);
      return { status: 200, contentType: 'application/json', body: Buffer.from('{}') };
    },
  };
  const instances = {
    completeMigration: async (_n: string, _to: string, ev: { type: string; data: Record<string, unknown> }) => { events.push(ev); },
    abortMigration: async (_n: string, ev: { type: string; data: Record<string, unknown> }) => { events.push(ev); },
    setView: async () => undefined,
  };
  const quiet = { info: () => undefined, warn: () => undefined };
  const m = new Migrator({
    store: {} as never, instances: instances as never, agents: agents as never, events: { record: async (ev: { type: string; data: Record<string, unknown> }) => { events.push({ ...ev, kept: true }); } } as never, log: quiet, pollMs: 1,
    ...(o.transport ? { transport: { plan: async () => o.transport! } } : {}),
  });
  const options = { maxDowntimeMs: 300, bandwidth: null, autoConverge: true, postcopy: o.postcopy ?? false };
  const run = () => m.run('g1', { options, timeoutS: o.timeoutS ?? 60 }, { from: a1, to: a2, uuid: 'u', spec: {} as InstanceSpec }, () => undefined);
  return { calls, bodies, events, run };
}

test('TLS: each side\'s step carries its material; the result and the event say tls', async () => {
  const h = harness([['active', 1], ['completed', 2]], { transport: PLAN });
  const r = await h.run();
  assert.equal(r.tls, true);
  assert.equal(r.postcopy, false);
  assert.deepEqual((h.bodies['a2 POST /migration/incoming'] as { tls: unknown }).tls, PLAN.incoming.tls);
  assert.deepEqual((h.bodies['a1 POST /migration'] as { tls: unknown }).tls, PLAN.start.tls);
  assert.equal((h.bodies['a2 POST /migration/incoming'] as { postcopy?: unknown }).postcopy, undefined, 'no postcopy asked');
  assert.equal(h.events[0]!.type, 'instance.migrated');
  assert.equal(h.events[0]!.data.tls, true);
  assert.equal(JSON.stringify(h.events).includes('KEY'), false, 'no key in the event');
});

test('no transport (a trusted network): plain, no material in the steps', async () => {
  const h = harness([['completed', 2]]);
  const r = await h.run();
  assert.equal(r.tls, false);
  assert.equal((h.bodies['a2 POST /migration/incoming'] as { tls?: unknown }).tls, undefined);
  assert.equal((h.bodies['a1 POST /migration'] as { tls?: unknown }).tls, undefined);
});

test('--postcopy: the destination is told first; the switch comes after the first pass, once; the destination runs; it completes', async () => {
  const h = harness([['active', 1], ['active', 1], ['active', 2], ['postcopy-active', 2], ['postcopy-active', 2], ['completed', 2]], { postcopy: true, transport: PLAN });
  const r = await h.run();
  assert.equal(r.postcopy, true);
  assert.equal((h.bodies['a2 POST /migration/incoming'] as { postcopy?: unknown }).postcopy, true);
  assert.equal((h.bodies['a1 POST /migration'] as { postcopy?: unknown }).postcopy, true);
  assert.deepEqual(h.calls, [
    'a2 POST /migration/incoming', 'a1 POST /migration', 'a1 GET /migration', 'a1 GET /migration', 'a1 GET /migration', 'a1 POST /migration/postcopy',
    // postcopy-active: the destination runs the guest (once) while the rest of its pages come
    'a1 GET /migration', 'a2 POST /migration/postcopy', 'a1 GET /migration', 'a1 GET /migration', 'a2 POST /migration/finish', 'a1 POST /migration/finish',
  ]);
  assert.equal(h.events[0]!.data.postcopy, true);
});

test('--postcopy on a migration that converges in its first pass: no switch', async () => {
  const h = harness([['active', 1], ['completed', 2]], { postcopy: true });
  const r = await h.run();
  assert.equal(r.postcopy, false);
  assert.ok(!h.calls.includes('a1 POST /migration/postcopy'));
});

test('a failure after the switch: nothing rolled back (no DELETE on a2, no cancel on a1), outcome postcopy-failed', async () => {
  const h = harness([['active', 2], ['postcopy-active', 2], ['postcopy-paused', 2]], { postcopy: true });
  await assert.rejects(h.run(), (e: CorralError) => {
    assert.equal(e.code, 'MIGRATION_FAILED');
    assert.equal(e.details.outcome, 'postcopy-failed');
    assert.match(e.message, /after it switched to postcopy \(QEMU says postcopy-paused\)[\s\S]*source on a1 is left paused[\s\S]*destination on a2 is left as it is/);
    return true;
  });
  assert.ok(!h.calls.some((c) => c.startsWith('a2 DELETE') || c === 'a1 POST /migration/cancel'), h.calls.join('\n'));
  assert.equal(h.events[0]!.type, 'instance.migration-failed');
  assert.equal(h.events[0]!.data.outcome, 'postcopy-failed');
  assert.equal(h.events[0]!.kept, true, 'the migration stays marked: the recovery (or a person) settles a broken postcopy');
});

test('a switch whose answer was lost is taken as made: a failure then rolls nothing back either', async () => {
  const h = harness([['active', 2], ['failed', 2]], { postcopy: true, postcopyAnswer: 'lost' });
  await assert.rejects(h.run(), /after it switched to postcopy/);
  assert.ok(!h.calls.some((c) => c.startsWith('a2 DELETE') || c === 'a1 POST /migration/cancel'));
});

test('a switch the source refused is no switch: the usual rollback (destination removed, source asked to run on)', async () => {
  const h = harness([['active', 2]], { postcopy: true, postcopyAnswer: 'refused' });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'QEMU_FAILED');
  assert.ok(h.calls.includes('a2 DELETE ?force=true&forget=true'), h.calls.join('\n'));
  assert.ok(h.calls.includes('a1 POST /migration/cancel'));
});

test('past the timeout after the switch: no cancel, the migration is waited for', async () => {
  const h = harness([['active', 2], ['postcopy-active', 2], ['postcopy-active', 2], ['completed', 2]], { postcopy: true, timeoutS: 1 });
  const realNow = Date.now;
  let t = realNow();
  Date.now = () => (t += 400); // every look at the clock is 0.4 s later: the 1 s timeout passes during postcopy
  try {
    const r = await h.run();
    assert.equal(r.postcopy, true);
  } finally {
    Date.now = realNow;
  }
  assert.ok(!h.calls.includes('a1 POST /migration/cancel'), h.calls.join('\n'));
});
