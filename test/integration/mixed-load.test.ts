/**
 * Mixed load: four API clients, each with its own seeded stream of operations (start, stop, kill, pause, resume,
 * restart, set, memory and vCPU resize, disk attach and detach, delete and re-create), run 200 of them at once on
 * ten tiny VMs on a bridge network, while each follows /v1/events. Then: no reply was a 5xx or a refusal the
 * state table would not make; every state a client saw (in a reply or a poll) is one the instance was in after
 * the request was sent; every stream tells the same story, each move one the table allows; and once settled the
 * invariants of invariants.ts hold, the running instances have their QEMUs, and after stopping them nothing is left.
 * The seed is printed; CORRAL_LOAD_SEED=N runs the same draw again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rng } from '../unit/rng.js';
import { Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';
import { checkInvariants } from './invariants.js';
import { EventFollower, readHistory } from './load-events.js';
import { judge, runClient, type Sent } from './load-ops.js';

const skip = SKIP_NO_TINY;

const NS = `corral-load-${process.pid}`;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });

const SEED = Number(process.env.CORRAL_LOAD_SEED ?? Math.floor(Math.random() * 2 ** 31));
const CLIENTS = 4;
const OPS_PER_CLIENT = 50;
/** requests each client has in flight at once */
const LANES = 2;
const INSTANCES = Array.from({ length: 10 }, (_, i) => `ld${i}`);
const VOLUMES = Array.from({ length: 6 }, (_, i) => `lv${i}`);
/**
 * Small guests with room to grow a vCPU and a balloon to shrink. The tiny guest's kernel needs about 96 MiB to
 * boot (at 80 MiB it panics, out of memory), and a live shrink is also the next boot size: no size goes below.
 */
const create = (name: string): Record<string, unknown> => ({ name, image: 'tiny', network: 'ldnet', memory: '128M', cpus: 1, maxCpus: 2, balloon: true });

/** Write what the clients sent and got, the events and the instances' console logs, for a failure to be read; the file's path. */
async function dump(sent: Sent[], events: unknown[]): Promise<string> {
  const file = join(tmpdir(), `corral-mixed-load-${SEED}-${process.pid}.json`);
  const consoles: Record<string, string> = {};
  for (const name of INSTANCES) consoles[name] = (await d.consoleLog(name).catch((e: Error) => e.message)).slice(-4000);
  const replies = sent.map((s) => ({ ...s, reply: { status: s.reply.status, body: s.reply.body } }));
  writeFileSync(file, JSON.stringify({ seed: SEED, daemonLog: d.log, sent: replies, events, consoles }, null, 1));
  return file;
}

/** The block devices the guest of running instance `name` sees, once it has booted. */
async function guestBlock(name: string): Promise<string[]> {
  let out = '';
  let log = '';
  await waitFor(async () => {
    out = await d.guest(name, 'sleep 1; echo "BLK=$(ls /sys/block | tr \'\\n\' ,)"', 60_000).catch(() => '');
    log = /BLK=/.test(out) ? '' : await d.consoleLog(name);
    return /BLK=/.test(out);
  }, 120_000, `the guest of ${name} to answer on its console`, () => log.slice(-1500));
  return /BLK=(\S*)/.exec(out)![1]!.split(',').filter(Boolean);
}

test(`200 operations from 4 clients on 10 VMs keep every state legal and leave nothing behind (seed ${SEED})`, { skip, timeout: 900_000 }, async (t) => {
  t.diagnostic(`seed ${SEED} (CORRAL_LOAD_SEED=${SEED} draws the same operations)`);
  const tag = `seed ${SEED}`;
  const followers = await Promise.all(Array.from({ length: CLIENTS }, () => EventFollower.open(d)));
  let sent: Sent[] = [];
  try {
    await d.ok('POST', '/v1/networks', { name: 'ldnet', kind: 'bridge', cidr: '10.95.0.0/24', nat: false }, 201);
    for (const v of VOLUMES) await d.ok('POST', '/v1/volumes', { name: v, size: '16M' }, 201);
    for (const name of INSTANCES) await d.ok('POST', '/v1/instances', create(name), 201);
    const capacity = (await d.ok('GET', '/v1/pool')).capacity;

    const setup = { instances: INSTANCES, volumes: VOLUMES, create };
    sent = (await Promise.all(followers.map((f, c) => runClient(d, c, OPS_PER_CLIENT, LANES, rng(SEED + c), setup, () => f.lastId())))).flat();

    // settled: every operation has answered, so nothing may stay starting or stopping
    await waitFor(async () => (await d.ok('GET', '/v1/instances')).instances.every((i: any) => !['starting', 'stopping'].includes(i.state)), 60_000, 'no instance in a transitional state');
    const seenBefore = Math.max(...followers.map((f) => f.lastId()));
    const stored = await d.events(0);
    assert.ok(stored.at(-1)!.id >= seenBefore, `${tag}: the replay holds every event a client was already sent`);
    await waitFor(() => followers.every((f) => f.lastId() >= stored.at(-1)!.id), 30_000, 'every client to have received every event');

    // every stream is the stored one, and it tells a consistent story
    for (const [c, f] of followers.entries()) {
      assert.deepEqual(f.events.filter((e) => e.id === undefined), [], `${tag}: client ${c} was sent no unstored event (cut as too slow, or the daemon stopping)`);
      assert.deepEqual(f.events.filter((e) => e.id! <= stored.at(-1)!.id).map((e) => e.id), stored.map((e) => e.id), `${tag}: client ${c}'s stream is the stored events`);
    }
    const { problems, history } = readHistory(stored);
    assert.deepEqual(problems, [], `${tag}: the event stream`);

    // every reply: no 5xx, only refusals the table makes, states the instance was really in
    const wrong = sent.flatMap((s) => judge(s, history));
    assert.deepEqual(wrong, [], `${tag}: replies`);
    const tally = new Map<string, number>();
    for (const s of sent) {
      const k = `${s.op} ${s.method} ${s.reply.status}${s.reply.body?.error ? ` ${s.reply.body.error.code}` : ''}`;
      tally.set(k, (tally.get(k) ?? 0) + 1);
    }
    t.diagnostic([...tally].sort().map(([k, n]) => `${k}: ${n}`).join(', '));
    t.diagnostic(`detaches finished when the guest released the disk late: ${stored.filter((e) => e.type === 'instance.disk.detached' && e.data.finished).length}`);
    assert.ok(sent.filter((s) => s.op === 'start' && s.reply.status === 200).length > 0, `${tag}: some start succeeded`);

    // the stored states are where the events left them, and the pool holds what the active instances hold
    const final: any[] = (await d.ok('GET', '/v1/instances')).instances;
    for (const i of final) assert.equal(i.state, history.get(i.name)!.at(-1)!.state, `${tag}: ${i.name}'s state is its last event's`);
    const active = final.filter((i) => ['running', 'paused'].includes(i.state));
    const pool = await d.ok('GET', '/v1/pool');
    assert.equal(pool.allocated.instances, active.length, `${tag}: the pool counts the live instances`);
    assert.equal(pool.allocated.cpus, active.reduce((s, i) => s + i.cpus, 0), `${tag}: the pool's vCPUs`);
    assert.ok(pool.allocated.cpus <= capacity.cpus, `${tag}: the pool is not oversubscribed`);
    await checkInvariants(d, NS, `${tag}: after the load`);
    t.diagnostic(`final: ${final.map((i) => `${i.name} ${i.state}`).join(', ')}`);

    // every running guest has the disks its records name (resumed first: a paused guest would act on a pending unplug then)
    for (const i of active.filter((x) => x.state === 'paused')) await d.ok('POST', `/v1/instances/${i.name}/resume`, {});
    const recorded = async (name: string): Promise<string[]> => (await d.ok('GET', `/v1/instances/${name}/disks`)).disks.map((x: any) => x.volume);
    for (const i of active) {
      // read the records before and after the guest (a late unplug finished meanwhile changes them): until they agree
      let before: string[], after: string[], blk: string[];
      do {
        before = await recorded(i.name);
        blk = await guestBlock(i.name);
        after = await recorded(i.name);
      } while (before.join() !== after.join());
      assert.equal(blk.filter((b) => b.startsWith('vd')).length, 1 + after.length, `${tag}: ${i.name}'s guest sees its root disk and the volumes recorded (${after}): ${blk}`);
    }

    // stop the rest: nothing is left
    for (const i of active) assert.equal((await d.ok('POST', `/v1/instances/${i.name}/kill`, {})).state, 'stopped');
    await checkInvariants(d, NS, `${tag}: after stopping every instance`);
    const empty = await d.ok('GET', '/v1/pool');
    assert.deepEqual([empty.allocated.instances, empty.allocated.cpus, empty.allocated.memory], [0, 0, 0], `${tag}: the pool is empty`);
  } catch (e) {
    t.diagnostic(`the requests, events and console logs are in ${await dump(sent, followers[0]!.events)}`);
    throw e;
  } finally {
    for (const f of followers) f.close();
  }
});
