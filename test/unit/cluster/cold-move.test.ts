/**
 * A stopped shared-pool instance's record moved to another host (cluster/cold-move.ts) against stand-in agents:
 * reserved, recorded there, the row moved, forgotten here, in that order; a failure leaves it where it was, with
 * nothing recorded on the destination; a source that started it meanwhile keeps it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { ColdMover } from '../../../src/cluster/cold-move.js';
import type { HostRow } from '../../../src/cluster/cluster-store.js';
import type { InstanceSpec } from '../../../src/core/spec.js';

const a1 = { name: 'a1' } as HostRow;
const a2 = { name: 'a2' } as HostRow;

interface Script { moveIn?: 'ok' | 'refused'; complete?: 'ok' | 'fails'; sourceDelete?: number | 'unreachable' }

function harness(s: Script = {}) {
  const calls: string[] = [];
  const agents = {
    json: async (h: HostRow, method: string, path: string, body?: { uuid: string }) => {
      calls.push(`${h.name} ${method} ${path.replace('/v1/instances/c1', '')} ${body?.uuid ?? ''}`.trim());
      if (s.moveIn === 'refused') throw new CorralError('IMAGE_NOT_FOUND', 'image "tiny" not found');
      return { name: 'c1', uuid: 'u1', state: 'stopped' };
    },
    call: async (h: HostRow, method: string, path: string) => {
      calls.push(`${h.name} ${method} ${path.replace('/v1/instances/c1', '') || '/'}`);
      if (h === a1 && s.sourceDelete === 'unreachable') throw new CorralError('HOST_UNAVAILABLE', 'host "a1" cannot be reached');
      const status = h === a1 && typeof s.sourceDelete === 'number' ? s.sourceDelete : 200;
      return { status, contentType: 'application/json', body: Buffer.from(status === 409 ? '{"error":{"code":"INVALID_STATE","message":"running"}}' : status === 404 ? '{"error":{"code":"INSTANCE_NOT_FOUND"}}' : '{}') };
    },
  };
  const instances = {
    reserveMigration: async (name: string, from: string) => { calls.push(`reserve ${name} from ${from}`); return a2; },
    completeMigration: async (_n: string, to: string, ev: { type: string }) => {
      if (s.complete === 'fails') throw new CorralError('DATABASE_UNAVAILABLE', 'the database went away');
      calls.push(`complete ${to} ${ev.type}`);
    },
    abortMigration: async (_n: string, ev: { type: string; data: { reason: string } }) => { calls.push(`abort ${ev.type}`); },
    setHost: async (_n: string, host: string, ev?: { type: string }) => { calls.push(`setHost ${host} ${ev?.type}`); },
    setView: async () => undefined,
  };
  const warnings: string[] = [];
  const m = new ColdMover({ instances: instances as never, agents: agents as never, log: { info: () => undefined, warn: (_o, w) => { warnings.push(w); } } });
  return { calls, warnings, move: () => m.move('c1', a1, { uuid: 'u1', spec: { rootPool: 'shared' } as InstanceSpec }) };
}

test('reserved, recorded on the destination with its uuid and spec, the row moved, then forgotten on the source', async () => {
  const h = harness();
  assert.deepEqual(await h.move(), { instance: 'c1', from: 'a1', to: 'a2' });
  assert.deepEqual(h.calls, ['reserve c1 from a1', 'a2 POST /move-in u1', 'complete a2 instance.moved', 'a1 DELETE ?forget=true']);
});

test('the destination refuses: the reservation goes, nothing is deleted anywhere', async () => {
  const h = harness({ moveIn: 'refused' });
  await assert.rejects(h.move(), (e: CorralError) => e.code === 'IMAGE_NOT_FOUND');
  assert.deepEqual(h.calls, ['reserve c1 from a1', 'a2 POST /move-in u1', 'abort instance.move-failed']);
});

test('the row cannot move: the destination\'s record goes (its disk stays: forget), the source keeps it', async () => {
  const h = harness({ complete: 'fails' });
  await assert.rejects(h.move(), (e: CorralError) => e.code === 'DATABASE_UNAVAILABLE');
  assert.deepEqual(h.calls, ['reserve c1 from a1', 'a2 POST /move-in u1', 'a2 DELETE ?forget=true', 'abort instance.move-failed']);
});

test('started on the source meanwhile: it stays there, the destination\'s record goes and the row names the source again', async () => {
  const h = harness({ sourceDelete: 409 });
  await assert.rejects(h.move(), (e: CorralError) => e.code === 'INVALID_STATE' && /started there meanwhile/.test(e.message));
  assert.deepEqual(h.calls.slice(-3), ['a1 DELETE ?forget=true', 'a2 DELETE ?forget=true', 'setHost a1 instance.move-failed']);
});

test('a source that cannot be asked to forget it: moved, with a warning saying so', async () => {
  const h = harness({ sourceDelete: 'unreachable' });
  const r = await h.move();
  assert.equal(r.to, 'a2');
  assert.match(r.warning ?? '', /host a1 could not be asked to forget/);
  // a source that no longer has it is fine too
  assert.equal((await harness({ sourceDelete: 404 }).move()).warning, undefined);
});
