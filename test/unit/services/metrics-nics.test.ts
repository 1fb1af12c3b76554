/**
 * MetricsService's NIC figures: a tap-backed NIC from the daemon's /proc/self/net/dev (the agent never asked for
 * it), a user-mode NIC from the guest agent's counters (source guest-agent), none when the agent does not answer;
 * and GET /v1/instances/NAME/nic-stats (what `corral stats` shows) listing every NIC with its source or null.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildApi } from '../../../src/api/server.js';
import { CorralError } from '../../../src/core/errors.js';
import type { GuestNicCounters } from '../../../src/core/guest-nic-counters.js';
import { tapName } from '../../../src/core/nics.js';
import { MetricsService } from '../../../src/services/metrics.js';
import type { InstanceService } from '../../../src/services/instances.js';
import type { InstanceRow } from '../../../src/store/store.js';
import { recordingServices } from '../api/recording-services.js';

const U_TAP = '11111111-1111-4111-8111-111111111111';
const U_USER = '22222222-2222-4222-8222-222222222222';
const nic = (id: string, mac: string, network: string) => ({ id, model: 'virtio-net', network, mac, queues: 1 });
const row = (name: string, uuid: string, nics: unknown[], state = 'running') =>
  ({ name, uuid, state, pid: state === 'stopped' ? null : 4242, spec: { cpus: 1, memory: 2 ** 27, maxMemory: null, balloon: false, agent: true, nics } }) as unknown as InstanceRow;

function setup(guest: (r: InstanceRow) => Promise<GuestNicCounters[] | null>) {
  const proc = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  mkdirSync(join(proc, 'self', 'net'), { recursive: true });
  writeFileSync(join(proc, 'self', 'net', 'dev'), `Inter-| Receive | Transmit\n face |bytes packets|bytes packets\n${tapName(U_TAP, 'net0')}:  5000  50 0 0 0 0 0 0  7000  70 0 0 0 0 0 0\n`);
  const rows = [row('bridged', U_TAP, [nic('net0', '52:54:00:00:00:01', 'br')]), row('usernet', U_USER, [nic('net0', '52:54:00:00:00:02', 'default'), nic('net1', '52:54:00:00:00:03', 'default')]), row('off', 'u3', [], 'stopped')];
  const asked: string[] = [];
  const instances = {
    listRows: () => rows,
    live: (name: string) => {
      const r = rows.find((x) => x.name === name);
      if (!r) throw new CorralError('INSTANCE_NOT_FOUND', `instance "${name}" not found`, { name });
      if (r.state !== 'running') throw new CorralError('INVALID_STATE', `instance "${name}" is ${r.state}: it must be running`, { state: r.state });
      return { row: r, pid: 4242, vm: { vcpus: async () => [], blockStats: async () => [], memdevs: async () => [], memoryTree: async () => '', gpaToHva: async () => '' } };
    },
  } as unknown as InstanceService;
  const m = new MetricsService({ instances, proc, guestNics: (r) => { asked.push(r.name); return guest(r); } });
  return { m, asked, instances, done: () => rmSync(proc, { recursive: true, force: true }) };
}

const ETH0 = { name: 'eth0', mac: '52:54:00:00:00:02', rxBytes: 9000, rxPackets: 90, txBytes: 1200, txPackets: 12 };

test('samples: taps from /proc/self/net/dev, user-mode NICs from the guest agent; the agent asked only where a NIC has no tap', async () => {
  const { m, asked, done } = setup(async () => [ETH0]);
  try {
    const [bridged, usernet, off] = await m.samples();
    assert.deepEqual(bridged!.nics, [{ nic: 'net0', source: 'tap', rxBytes: 7000, txBytes: 5000, rxPackets: 70, txPackets: 50 }]);
    assert.deepEqual(usernet!.nics, [{ nic: 'net0', source: 'guest-agent', rxBytes: 9000, txBytes: 1200, rxPackets: 90, txPackets: 12 }], 'net1: the guest has no interface of its MAC');
    assert.deepEqual(off!.nics, []);
    assert.deepEqual(asked, ['usernet']);
  } finally {
    done();
  }
});

test('an agent that does not answer (or fails): the user-mode NICs have no figures, the rest of the sample is there', async () => {
  for (const guest of [async () => null, async () => { throw new Error('boom'); }]) {
    const { m, done } = setup(guest);
    try {
      const [bridged, usernet] = await m.samples();
      assert.equal(bridged!.nics.length, 1);
      assert.deepEqual(usernet!.nics, []);
      assert.equal(usernet!.state, 'running');
    } finally {
      done();
    }
  }
});

test('GET /v1/instances/NAME/nic-stats: every NIC with its counters and source, null where there are none; a stopped instance is refused', async () => {
  const { m, instances, done } = setup(async () => [ETH0]);
  const app = await buildApi(recordingServices([], { metrics: m, instances }), {});
  try {
    const r = await app.inject({ method: 'GET', url: '/v1/instances/usernet/nic-stats' });
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.json(), {
      name: 'usernet',
      nics: [
        { nic: 'net0', model: 'virtio-net', network: 'default', mac: '52:54:00:00:00:02', source: 'guest-agent', rxBytes: 9000, rxPackets: 90, txBytes: 1200, txPackets: 12 },
        { nic: 'net1', model: 'virtio-net', network: 'default', mac: '52:54:00:00:00:03', source: null, rxBytes: null, rxPackets: null, txBytes: null, txPackets: null },
      ],
    });
    assert.equal((await app.inject({ method: 'GET', url: '/v1/instances/bridged/nic-stats' })).json().nics[0].source, 'tap');
    const off = await app.inject({ method: 'GET', url: '/v1/instances/off/nic-stats' });
    assert.equal(off.statusCode, 409);
    assert.equal(off.json().error.code, 'INVALID_STATE');
    assert.equal((await app.inject({ method: 'GET', url: '/v1/instances/nosuch/nic-stats' })).statusCode, 404);
  } finally {
    await app.close();
    done();
  }
});
