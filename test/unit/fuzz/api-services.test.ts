/**
 * Fuzzing of every API route with a JSON body, where the bodies its schema accepts reach the REAL services (the
 * daemon's service graph over the fake hypervisor and a temporary data dir: service-graph.ts). Each route is fuzzed
 * with the target instance `web1` stopped and then running (a volume `web1` exists throughout). For every body:
 * never a 5xx, an error reply is {error:{code,message}} with a known 4xx code, and a refused request leaves
 * nothing behind (no file in the data dir, no row, no tap, bridge, VF, cgroup or VM process that was not there
 * before). No rejection goes unhandled, and the daemon still answers afterwards.
 * A failure names the route, the body and the seed; FUZZ_SEED and FUZZ_RUNS explore further, FUZZ_DEBUG=1 prints
 * every request and reply.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import { ErrorCodes } from '../../../src/core/errors.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';
import { shaped, type Hints, type Json } from './arbitraries.js';
import { plausible } from './plausible.js';
import { bodyRoutes, oracle } from './body-routes.js';
import { holdings } from './leftovers.js';
import { serviceGraph, type Graph } from './service-graph.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261201);
const RUNS = Number(process.env.FUZZ_RUNS ?? 8); // per route and phase: every run reaches the services (qemu-img and all)

/** Routes left out, and why. */
const EXCLUDED: Record<string, string> = {
  'POST /v1/images/build-tiny': 'builds the tiny image from the host\'s kernel and Debian packages: minutes of work, not a unit test\'s',
};

const clientCodes = new Set(Object.entries(ErrorCodes).filter(([, status]) => status < 500).map(([code]) => code));
const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => { unhandled.push(e); };
process.on('unhandledRejection', onUnhandled);

let g: Graph;
let app: FastifyInstance;
/** a listening unix socket outside the data dir, for vhost-user back ends */
let backend: Server | undefined;
const socketDir = mkdtempSync(join(tmpdir(), 'corral-fuzz-vhost-'));
const socket = join(socketDir, 'backend.sock');
before(async () => {
  if (SKIP_NO_QEMU_IMG) return;
  g = await serviceGraph();
  app = await buildApi(g.services);
  backend = createServer((c) => c.destroy());
  await new Promise<void>((resolve) => backend!.listen(socket, resolve));
});
after(async () => {
  process.off('unhandledRejection', onUnhandled);
  await app?.close();
  await g?.close();
  backend?.close();
  rmSync(socketDir, { recursive: true, force: true });
});

type Phase = 'stopped' | 'running';

/**
 * The error of a refused request, checked to be coded: {error:{code,message}} with a known 4xx code that matches the
 * status; a streamed job (application/x-ndjson, 200 sent before it ran) is refused when its last line is an error.
 */
function refusal(status: number, type: unknown, body: string, what: string): { code: string; message: string } | null {
  let e: { code?: unknown; message?: unknown } | undefined;
  if (status < 400 && String(type).startsWith('application/x-ndjson')) {
    const last = JSON.parse(body.trim().split('\n').at(-1)!) as { type: string; error?: typeof e };
    if (last.type !== 'error') return null;
    e = last.error;
    status = ErrorCodes[e?.code as keyof typeof ErrorCodes] ?? 500;
  } else if (status < 400) {
    return null;
  } else {
    e = (JSON.parse(body) as { error?: typeof e }).error;
  }
  assert.ok(e && typeof e.code === 'string' && clientCodes.has(e.code), `${what}: uncoded or server error ${body.slice(0, 500)}`);
  assert.equal(typeof e.message, 'string');
  assert.equal(ErrorCodes[e.code as keyof typeof ErrorCodes], status, `${what}: ${String(e.code)} answered with ${status}`);
  return { code: e.code, message: String(e.message) };
}

/**
 * Bodies shaped like the schema; half of them cut down to the required fields and one other, since a body of
 * many fields is nearly always refused for one of them and never reaches what comes after the checks.
 */
function bodies(schema: Json, hints: Hints): fc.Arbitrary<unknown> {
  const required = new Set((schema.required ?? []) as string[]);
  return fc.tuple(shaped(schema, 0, hints), fc.boolean(), fc.nat()).map(([body, cut, pick]) => {
    if (!cut || typeof body !== 'object' || body === null || Array.isArray(body)) return body;
    const optional = Object.keys(body).filter((k) => !required.has(k));
    const keep = new Set([...required, optional[pick % Math.max(1, optional.length)]]);
    return Object.fromEntries(Object.entries(body).filter(([k]) => keep.has(k)));
  });
}

async function makeWeb1(): Promise<void> {
  const r = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'web1', image: 'tiny', memory: '256M' } });
  assert.equal(r.statusCode, 201, `cannot make web1: ${r.body}`);
}

/** `web1` exists and is in `phase`; remade when what the fuzzing did to it keeps it from getting there. */
async function prepare(phase: Phase): Promise<void> {
  const inst = g.services.instances;
  if (!g.store.getInstance('web1')) await makeWeb1();
  if (!g.services.volumes.list().some((v) => v.name === 'web1')) await g.services.volumes.create('web1', '64M', 'qcow2');
  const state = (): string => g.store.getInstance('web1')!.state;
  try {
    // the fake hypervisor's VMs have no threads for taskset to pin: a pin that a PATCH gave web1 is taken back
    if (g.store.getInstance('web1')!.spec.pin !== null) {
      if (state() !== 'stopped') await inst.kill('web1');
      const r = await app.inject({ method: 'PATCH', url: '/v1/instances/web1', payload: { pin: null } });
      assert.equal(r.statusCode, 200, r.body);
    }
    if (phase === 'stopped' && state() !== 'stopped') await inst.kill('web1');
    if (phase === 'running' && state() === 'paused') await inst.resume('web1');
    if (phase === 'running' && state() !== 'running') {
      if (state() !== 'stopped') await inst.kill('web1');
      await inst.start('web1');
    }
  } catch {
    await inst.delete('web1', true);
    await makeWeb1();
    if (phase === 'running') await inst.start('web1');
  }
  assert.equal(state(), phase);
}

test('found by the fuzzing: a running instance grows to its maxCpus (the fake hypervisor offers QEMU\'s vCPU slots)', { skip: SKIP_NO_QEMU_IMG }, async () => {
  const made = await app.inject({ method: 'POST', url: '/v1/instances', payload: { name: 'hot1', image: 'tiny', memory: '256M', cpus: 1, maxCpus: 4 } });
  assert.equal(made.statusCode, 201, made.body);
  await g.services.instances.start('hot1');
  const r = await app.inject({ method: 'POST', url: '/v1/instances/hot1/cpus', payload: { count: 4 } });
  assert.equal(r.statusCode, 200, r.body);
  assert.equal((r.json() as { vcpus: unknown[] }).vcpus.length, 4);
  await g.services.instances.delete('hot1', true);
});

test('bodies the schema accepts, through the real services: no 5xx, coded errors, nothing left by a refusal', { skip: SKIP_NO_QEMU_IMG }, async () => {
  const routes = await bodyRoutes('web1');
  assert.ok(routes.length >= 20, `only ${routes.length} routes with a JSON body`);
  const hints = plausible([g.services.images.get('tiny').disk, '/etc/hostname', socket]);
  const codes = new Map<string, number>();
  let succeeded = 0;
  for (const phase of ['stopped', 'running'] as const) {
    for (const route of routes) {
      const key = `${route.method} ${route.url.replace(/web1/g, '{name}')}`;
      if (key in EXCLUDED) continue;
      const ok = oracle(route);
      await fc.assert(
        fc.asyncProperty(bodies(route.schema, hints).filter(ok), async (body) => {
          await prepare(phase);
          const held = holdings(g);
          if (process.env.FUZZ_DEBUG) console.log(`> ${route.method} ${route.url} ${JSON.stringify(body).slice(0, 2000)}`);
          const r = await app.inject({ method: route.method as 'POST', url: route.url, payload: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
          const what = `${route.method} ${route.url} (web1 ${phase}, seed ${SEED}) ${JSON.stringify(body).slice(0, 300)}`;
          assert.ok(r.statusCode < 500, `${what}: ${r.statusCode} ${r.body.slice(0, 500)}`);
          if (process.env.FUZZ_DEBUG) console.log(phase, route.method, route.url, r.statusCode, r.body.replace(/\n/g, ' ').slice(-200));
          const e = refusal(r.statusCode, r.headers['content-type'], r.body, what);
          if (!e) {
            succeeded++;
            return;
          }
          codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
          assert.deepEqual(holdings(g), held, `${what}: refused with ${e.code} (${e.message}) but left something behind`);
        }),
        { seed: SEED, numRuns: RUNS, maxSkipsPerRun: 1000, endOnFailure: true, includeErrorInReport: true },
      );
    }
  }
  const list = await app.inject({ method: 'GET', url: '/v1/instances' });
  assert.equal(list.statusCode, 200, 'the daemon still answers');
  assert.ok(succeeded > 20, `only ${succeeded} requests succeeded: the bodies hardly reach the services' success paths`);
  assert.ok(codes.size >= 5, `the services refused with only ${[...codes.keys()].join(', ')}`);
  assert.deepEqual(unhandled, []);
});
