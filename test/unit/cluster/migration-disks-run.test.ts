/**
 * The controller's side of a live migration with local disks (cluster/migration.ts with migration-disks.ts) against
 * stand-in agents: the calls in order (facts, the destination's check, the incoming with the disks, the mirrors
 * until ready, the RAM, the mirrors completed before the destination runs); a destination without the base image
 * gets its files first; a taken volume name is refused before anything moves (the reservation given back); a
 * mirror that fails, a cancel or the timeout mid-mirror, and a completion that fails roll back, removing what the
 * destination made, and the RAM never moves before the mirrors are ready.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { CorralError } from '../../../src/core/errors.js';
import { Migrator } from '../../../src/cluster/migration.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import type { MigrationFigures } from '../../../src/core/migration.js';
import type { InstanceSpec } from '../../../src/core/spec.js';

const a1 = { name: 'a1', address: 'https://10.0.0.11:8444' } as HostRow;
const a2 = { name: 'a2', address: 'https://10.0.0.12:8444' } as HostRow;
const spec = { rootPool: 'local', disks: [{ volume: 'data', bus: 'virtio-blk' }], nics: [], hostdevs: [] } as unknown as InstanceSpec;
const facts = {
  disks: [{ id: 'disk0', node: 'disk0-fmt', role: 'root', format: 'qcow2', virtualSize: 134217728, sync: 'top' }, { id: 'vol-data', node: 'vol-data-fmt', role: 'volume', volume: 'data', format: 'qcow2', virtualSize: 67108864, sync: 'full' }],
  image: { name: 'tiny', kind: 'kernel', format: 'qcow2', digest: 'd'.repeat(64), files: [{ role: 'disk', size: 5, sha256: 'a'.repeat(64) }, { role: 'kernel', size: 3, sha256: 'b'.repeat(64) }] },
  imageRecord: { createdAt: '2026-01-01T00:00:00Z', source: 'tiny' },
};

function figures(status: string): MigrationFigures {
  return { status, totalMs: 600, downtimeMs: 40, expectedDowntimeMs: 30, setupMs: 5, transferredBytes: 1000, remainingBytes: 0, totalBytes: 2000, rate: 100, dirtyRate: 0, passes: 2 } as MigrationFigures;
}

interface Script {
  /** what the destination's check says */
  taken?: string[];
  image?: 'same' | 'missing';
  /** the mirrors' status, poll after poll (the last one repeats), until the source is asked to cancel */
  mirrors: readonly string[];
  /** the source's query-migrate, poll after poll */
  statuses?: string[];
  complete?: 'ok' | 'fails';
  timeoutS?: number;
}

function harness(s: Script) {
  const calls: string[] = [];
  const done: string[] = [];
  const bodies = new Map<string, unknown>();
  const uploaded: Array<{ path: string; bytes: string; length: number }> = [];
  let mirrorPoll = 0;
  let cancelled = false;
  let poll = 0;
  const tail = (h: HostRow, method: string, path: string): string => {
    const t = path.replace('/v1/instances/g1', '') || '/';
    calls.push(`${h.name} ${method} ${t}`);
    return t;
  };
  const agents = {
    json: async (h: HostRow, method: string, path: string, body?: unknown): Promise<unknown> => {
      const t = tail(h, method, path);
      bodies.set(`${h.name} ${method} ${t}`, body);
      if (t === '/' && method === 'GET' && h === a1) return { state: 'running', uuid: 'u', spec };
      if (t === '/migration/disks' && h === a1) return facts;
      if (t === '/migration/disks/check' && h === a2) return { volumesTaken: s.taken ?? [], image: s.image === 'missing' ? null : { digest: facts.image.digest } };
      if (t === '/migration/image' || t === '/migration/image/commit') return {};
      if (t === '/migration/incoming') return { uri: 'tcp:10.0.0.12:49152', nbd: { host: '10.0.0.12', port: 49153 } };
      if (t === '/migration/disks/mirror' && method === 'POST') return {};
      if (t === '/migration/disks/mirror' && method === 'GET') {
        // (the source's cancel abandons the mirrors: they say so from then on)
        const st = cancelled ? 'cancelled' : s.mirrors[Math.min(mirrorPoll++, s.mirrors.length - 1)]!;
        return { status: st, doneBytes: 10, totalBytes: 20, disks: [], error: st === 'failed' ? 'disk vol-data: Input/output error' : null };
      }
      if (t === '/migration' && method === 'POST') return {};
      if (t === '/migration' && method === 'GET') { const l = s.statuses ?? ['completed']; return figures(l[Math.min(poll++, l.length - 1)]!); }
      if (t === '/migration/cancel') {
        cancelled = true;
        return figures('cancelled');
      }
      if (t === '/migration/disks/complete') {
        if (s.complete === 'fails') throw new CorralError('MIGRATION_FAILED', 'the disks of instance "g1" could not be completed on the destination: disk disk0: boom');
        return { bytes: 201326592, ms: 1234 };
      }
      if (t === '/migration/disks/abort') return { aborted: 'g1' };
      if (t === '/migration/finish') return h === a2 ? { instance: { name: 'g1', state: 'running' } } : {};
      throw new Error(`unexpected ${method} ${path}`);
    },
    call: async (h: HostRow, method: string, path: string) => {
      tail(h, method, path);
      return { status: 200, contentType: 'application/json', body: Buffer.from('{}') };
    },
    stream: async (h: HostRow, method: string, path: string) => {
      const t = tail(h, method, path);
      const r = Readable.from([Buffer.from(t.endsWith('/disk') ? 'DISK!' : 'KRN')]) as Readable & { statusCode?: number };
      r.statusCode = 200;
      return r;
    },
    upload: async (h: HostRow, method: string, path: string, body: Readable, length: number) => {
      const t = tail(h, method, path);
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(c as Buffer);
      uploaded.push({ path: t, bytes: Buffer.concat(chunks).toString(), length });
      return { size: length };
    },
  };
  const instances = {
    get: async () => ({ name: 'g1', host: 'a1' }),
    reserveMigration: async () => a2,
    completeMigration: async (_n: string, to: string, ev: { data: unknown }) => { done.push(`complete ${to}`); bodies.set('event', ev.data); },
    abortMigration: async () => { done.push('abort'); },
    setView: async () => undefined,
  };
  const store = { getHost: async (n: string) => [a1, a2].find((x) => x.name === n) ?? null, listHosts: async () => [a1, a2] };
  const quiet = { info: () => undefined, warn: () => undefined };
  const m = new Migrator({ store: store as never, instances: instances as never, agents: agents as never, events: { record: async () => undefined }, log: quiet, pollMs: 1 });
  const req = { to: 'a2', options: { maxDowntimeMs: 300, autoConverge: true, bandwidth: s.timeoutS ? 1024 : null }, timeoutS: s.timeoutS ?? 60 };
  const lines: unknown[] = [];
  const prepare = () => m.prepare('g1', req as never);
  const run = async () => m.run('g1', req as never, await prepare(), () => undefined, (d) => lines.push(d));
  return { calls, done, bodies, uploaded, lines, run, prepare };
}

test('local disks, the destination has the base image: facts, check, incoming with the disks, mirrors until ready, RAM, mirrors completed, then the destination runs', async () => {
  const h = harness({ mirrors: ['copying', 'copying', 'ready'], statuses: ['active', 'completed'] });
  const r = await h.run();
  const from = h.calls.indexOf('a1 GET /migration/disks');
  assert.deepEqual(h.calls.slice(from), [
    'a1 GET /migration/disks', 'a2 POST /migration/disks/check', 'a2 POST /migration/incoming', 'a1 POST /migration/disks/mirror',
    'a1 GET /migration/disks/mirror', 'a1 GET /migration/disks/mirror', 'a1 GET /migration/disks/mirror',
    'a1 POST /migration', 'a1 GET /migration', 'a1 GET /migration', 'a1 POST /migration/disks/complete', 'a2 POST /migration/finish', 'a1 POST /migration/finish',
  ]);
  assert.deepEqual((h.bodies.get('a2 POST /migration/incoming') as { disks: unknown }).disks, facts.disks, 'the destination is told the disks');
  assert.deepEqual(h.bodies.get('a1 POST /migration/disks/mirror'), { host: '10.0.0.12', port: 49153 }, 'the mirrors go where the incoming said; no speed without --bandwidth');
  assert.deepEqual([r.diskBytes, r.diskMs, r.imageBytes], [201326592, 1234, undefined]);
  assert.equal((h.bodies.get('event') as { diskBytes?: number }).diskBytes, 201326592, 'the event has the disk figures');
  assert.equal(h.lines.filter((l) => (l as { phase: string }).phase === 'mirror').length, 3, 'a progress line each poll');
  assert.deepEqual(h.done, ['complete a2']);
});

test('a destination without the base image gets its files from the source first, then the commit, before the incoming', async () => {
  const h = harness({ image: 'missing', mirrors: ['ready'] });
  const r = await h.run();
  const at = (c: string): number => h.calls.indexOf(c);
  assert.ok(at('a2 POST /migration/image') < at('a1 GET /migration/image/disk'), h.calls.join('\n'));
  assert.ok(at('a2 PUT /migration/image/kernel') < at('a2 POST /migration/image/commit'));
  assert.ok(at('a2 POST /migration/image/commit') < at('a2 POST /migration/incoming'));
  assert.deepEqual(h.uploaded, [{ path: '/migration/image/disk', bytes: 'DISK!', length: 5 }, { path: '/migration/image/kernel', bytes: 'KRN', length: 3 }]);
  assert.deepEqual(h.bodies.get('a2 POST /migration/image/commit'), facts.imageRecord);
  assert.equal(r.imageBytes, 8);
  const last = h.lines.filter((l) => (l as { phase: string }).phase === 'image').pop() as { doneBytes: number; totalBytes: number };
  assert.deepEqual([last.doneBytes, last.totalBytes], [8, 8]);
});

test('a volume name the destination has is NOT_MIGRATABLE before anything moves; the reservation is given back', async () => {
  const h = harness({ taken: ['data'], mirrors: ['ready'] });
  await assert.rejects(h.prepare(), (e: CorralError) => e.code === 'NOT_MIGRATABLE' && /host a2 already has a volume named "data"/.test(e.message));
  assert.ok(!h.calls.some((c) => /incoming|image|mirror/.test(c)), h.calls.join('\n'));
  assert.deepEqual(h.done, ['abort']);
});

for (const [what, script, re] of [
  ['a mirror that fails', { mirrors: ['copying', 'failed'] }, /failed: disk vol-data: Input\/output error: it runs on host a1/],
  ['a cancel mid-mirror', { mirrors: ['copying', 'cancelled'] }, /was cancelled: it runs on host a1/],
  ['the timeout mid-mirror', { mirrors: ['copying'], timeoutS: 0.001 }, /ran past its timeout .* and was cancelled: it runs on host a1/],
] as const) {
  test(`${what}: MIGRATION_FAILED, the RAM never moves, the source cancels, the destination's instance and what it made are removed`, async () => {
    const h = harness(script);
    await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && re.test(e.message));
    assert.ok(!h.calls.includes('a1 POST /migration'), 'the RAM migration never started');
    assert.ok(h.calls.includes('a1 POST /migration/cancel'));
    const del = h.calls.indexOf('a2 DELETE ?force=true&forget=true');
    assert.ok(del > 0 && del < h.calls.indexOf('a2 POST /migration/disks/abort'), `the instance goes first, then what was made for it: ${h.calls.join('\n')}`);
    if (what === 'the timeout mid-mirror') assert.deepEqual(h.bodies.get('a1 POST /migration/disks/mirror'), { host: '10.0.0.12', port: 49153, speed: 1024 }, 'the bandwidth caps the mirrors');
    assert.deepEqual(h.done, ['abort']);
  });
}

test('mirrors that cannot be completed after the switch-over: the destination never runs, the source runs on', async () => {
  const h = harness({ mirrors: ['ready'], complete: 'fails' });
  await assert.rejects(h.run(), (e: CorralError) => e.code === 'MIGRATION_FAILED' && /could not be completed/.test(e.message));
  assert.ok(!h.calls.includes('a2 POST /migration/finish'), 'the destination never runs');
  assert.ok(!h.calls.includes('a1 POST /migration/finish'), 'the source keeps its files');
  assert.ok(h.calls.includes('a1 POST /migration/cancel'), 'the source is asked to run on');
  assert.ok(h.calls.includes('a2 POST /migration/disks/abort'));
});
