/**
 * A controller's routes for copies and archives (controller-archives.ts), with a fake cluster and fake agents: a
 * copy is placed on its source's host, its view stored from the agent's result (which gets `host`), and its row
 * removed when the agent refuses or fails it; an export's archive is found on the host that holds it (the one that
 * prepared it first) and streamed with its length; an import reads the manifest, places the instance (on the target
 * when given), and sends the host every byte of the archive; a name taken or a file that is no archive is refused
 * before any host is asked, and a host's refusal comes back as it said with nothing left.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { newApp, installErrorReplies } from '../../../src/api/app.js';
import { controllerArchiveRoutes, type ArchiveRouteDeps } from '../../../src/cluster/controller-archives.js';
import type { HostRow, HostState } from '../../../src/cluster/cluster-store.js';
import type { PlaceRequest } from '../../../src/cluster/cluster-instances.js';
import { CorralError } from '../../../src/core/errors.js';
import { ARCHIVE_FORMAT, encodeManifest, type ArchiveManifest } from '../../../src/core/instance-archive.js';
import { encodeHeader, endBlocks, padding } from '../../../src/core/tar.js';
import { validateCreate } from '../../../src/core/spec.js';

function host(name: string, state: HostState = 'up'): HostRow {
  return { name, state, address: 'https://127.0.0.1:1', labels: {}, reserved: { cpus: 0, memory: 0, instances: 0 } } as unknown as HostRow;
}

/** An agent's answer: a status, a content type, and the body in these chunks. */
interface Answer { status: number; type?: string; chunks: Array<string | Buffer>; length?: number }

function message(a: Answer): IncomingMessage {
  const m = Readable.from(a.chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c))) as unknown as IncomingMessage;
  m.statusCode = a.status;
  m.headers = { 'content-type': a.type ?? 'application/x-ndjson', ...(a.length !== undefined ? { 'content-length': String(a.length) } : {}) };
  return m;
}

const job = (...lines: object[]): Answer => ({ status: 200, chunks: lines.map((l) => `${JSON.stringify(l)}\n`) });
const refusal = (status: number, code: string, message: string): Answer => ({ status, type: 'application/json', chunks: [JSON.stringify({ error: { code, message } })] });
const view = (name: string) => ({ name, uuid: '6f1c1a2e-1111-4222-8333-444455556666', state: 'stopped', image: 'tiny', cpus: 1, memory: 134217728, updatedAt: '2026-12-01T00:00:00.000Z' });

interface Row { name: string; host: string; cpus: number; memory: number; view?: unknown }

/** A cluster of these hosts holding `rows`, whose agents answer from `answers` ("a1 POST /path" -> answer or error). */
function cluster(hosts: HostRow[], rows: Row[], answers: Record<string, Answer | Error>) {
  const asked: string[] = [];
  const placed: PlaceRequest[] = [];
  const uploaded: Buffer[] = [];
  const table = new Map(rows.map((r) => [r.name, r]));
  const answer = (key: string): IncomingMessage => {
    asked.push(key);
    const a = answers[key];
    if (a === undefined) return message(refusal(404, 'NOT_FOUND', `no route ${key}`));
    if (a instanceof Error) throw a;
    return message(a);
  };
  const d: ArchiveRouteDeps = {
    store: { getHost: async (n) => hosts.find((h) => h.name === n) ?? null, listHosts: async () => hosts },
    instances: {
      get: async (n) => (table.get(n) ?? null) as never,
      place: async (req) => {
        if (table.has(req.name)) throw new CorralError('ALREADY_EXISTS', `an instance named "${req.name}" exists (on host ${table.get(req.name)!.host})`, { name: req.name });
        placed.push(req);
        const h = req.host ?? 'a2';
        table.set(req.name, { name: req.name, host: h, cpus: req.cpus, memory: req.memory });
        return { instance: table.get(req.name) as never, host: hosts.find((x) => x.name === h)! };
      },
      remove: async (n) => table.delete(n),
      setView: async (n, _h, v) => { table.get(n)!.view = v; },
      setUuid: async () => undefined,
    },
    agents: {
      stream: async (h, method, path) => answer(`${h.name} ${method} ${path}`),
      relay: async (h, method, path, body, o) => {
        const chunks: Buffer[] = [o.prefix ?? Buffer.alloc(0)];
        for await (const c of body) chunks.push(c as Buffer);
        uploaded.push(Buffer.concat(chunks));
        return answer(`${h.name} ${method} ${path}`);
      },
    },
    log: { info: () => undefined, warn: () => undefined },
  };
  return { d, asked, placed, uploaded, table };
}

async function appOf(d: ArchiveRouteDeps): Promise<FastifyInstance> {
  const app = newApp({});
  installErrorReplies(app);
  await app.register(controllerArchiveRoutes(d));
  await app.ready();
  return app;
}

const lines = (body: string): any[] => body.trim().split('\n').map((l) => JSON.parse(l));
const hosts = [host('a1'), host('a2'), host('a3', 'unreachable')];

test('a copy is placed on its source\'s host, relayed as the agent\'s job, and stored from its result, which names the host', async () => {
  const progress = { type: 'progress', step: 'copy', message: 'copying', percent: 50 };
  const c = cluster(hosts, [{ name: 'web', host: 'a1', cpus: 2, memory: 256 << 20 }], {
    // a line cut across chunks is relayed whole
    'a1 POST /v1/instances/web/copy': { status: 200, chunks: [`${JSON.stringify(progress)}\n{"type":"res`, `ult","instance":${JSON.stringify(view('web2'))}}\n`] },
  });
  const app = await appOf(c.d);
  const r = await app.inject({ method: 'POST', url: '/v1/instances/web/copy', payload: { name: 'web2' } });
  assert.equal(r.statusCode, 200);
  const out = lines(r.body);
  assert.deepEqual(out[0], progress);
  assert.deepEqual(out[1], { type: 'result', instance: { ...view('web2'), host: 'a1' } });
  assert.deepEqual(c.placed.map((p) => [p.name, p.host, p.cpus, p.memory]), [['web2', 'a1', 2, 256 << 20]]);
  assert.match(c.placed[0]!.why!, /a copy of "web", on its host a1/);
  assert.deepEqual(c.table.get('web2'), { name: 'web2', host: 'a1', cpus: 2, memory: 256 << 20, view: { ...view('web2'), accel: null, pid: null, startedAt: null, lastError: null } });
  await app.close();
});

test('a copy over a name taken elsewhere is ALREADY_EXISTS before the agent is asked; one the agent refuses or fails leaves no row', async () => {
  const c = cluster(hosts, [{ name: 'web', host: 'a1', cpus: 1, memory: 1 }, { name: 'db', host: 'a2', cpus: 1, memory: 1 }], {
    'a1 POST /v1/instances/web/copy': job({ type: 'progress', step: 'copy', message: 'x' }, { type: 'error', error: { code: 'INVALID_STATE', message: 'shared pool' } }),
  });
  const app = await appOf(c.d);
  const taken = await app.inject({ method: 'POST', url: '/v1/instances/web/copy', payload: { name: 'db' } });
  assert.equal(taken.statusCode, 409);
  assert.equal(taken.json().error.code, 'ALREADY_EXISTS');
  assert.match(taken.json().error.message, /on host a2/);
  assert.deepEqual(c.asked, []);

  const failed = await app.inject({ method: 'POST', url: '/v1/instances/web/copy', payload: { name: 'web2' } });
  assert.equal(lines(failed.body)[1].error.code, 'INVALID_STATE');
  assert.equal(c.table.has('web2'), false);

  // the agent's own refusal (not a job): relayed as it is
  const none = await app.inject({ method: 'POST', url: '/v1/instances/nosuch/copy', payload: { name: 'x2' } });
  assert.equal(none.json().error.code, 'INSTANCE_NOT_FOUND');
  const bad = await app.inject({ method: 'POST', url: '/v1/instances/web/copy', payload: { name: 'Bad Name' } });
  assert.equal(bad.json().error.code, 'INVALID_SPEC');
  assert.deepEqual([...c.table.keys()].sort(), ['db', 'web']);
  await app.close();
});

test('an export is relayed from the owner; its archive comes from the host that prepared it, with its length', async () => {
  const id = '0b0c0d0e-1111-4222-8333-444455556666';
  const tar = Buffer.alloc(3000, 7);
  const c = cluster(hosts, [{ name: 'web', host: 'a2', cpus: 1, memory: 1 }], {
    'a2 POST /v1/instances/web/export': job({ type: 'result', export: { id, size: tar.length } }),
    [`a2 GET /v1/exports/${id}`]: { status: 200, type: 'application/x-tar', chunks: [tar.subarray(0, 1000), tar.subarray(1000)], length: tar.length },
  });
  const app = await appOf(c.d);
  const ex = await app.inject({ method: 'POST', url: '/v1/instances/web/export', payload: {} });
  assert.equal(lines(ex.body)[0].export.id, id);
  const got = await app.inject({ method: 'GET', url: `/v1/exports/${id}` });
  assert.equal(got.statusCode, 200);
  assert.equal(got.headers['content-type'], 'application/x-tar');
  assert.equal(got.headers['content-length'], String(tar.length));
  assert.deepEqual(got.rawPayload, tar);
  // the host that prepared it was asked first (and only)
  assert.deepEqual(c.asked, ['a2 POST /v1/instances/web/export', `a2 GET /v1/exports/${id}`]);
  await app.close();
});

test('an archive this controller did not relay is asked of each host that answers until one has it; none: NOT_FOUND naming them', async () => {
  const id = '0b0c0d0e-1111-4222-8333-444455556666';
  const other = '0b0c0d0e-1111-4222-8333-000000000000';
  const c = cluster([host('a1'), host('a2'), host('a3', 'unreachable'), host('a4', 'maintenance')], [], {
    [`a2 GET /v1/exports/${other}`]: new CorralError('HOST_UNAVAILABLE', 'cannot be reached'),
    [`a1 GET /v1/exports/${id}`]: refusal(404, 'NOT_FOUND', 'no archive'),
    [`a2 GET /v1/exports/${id}`]: refusal(404, 'NOT_FOUND', 'no archive'),
    [`a4 GET /v1/exports/${id}`]: { status: 200, type: 'application/x-tar', chunks: ['tar!'], length: 4 },
  });
  const app = await appOf(c.d);
  const got = await app.inject({ method: 'GET', url: `/v1/exports/${id}` });
  assert.equal(got.body, 'tar!');
  assert.deepEqual(c.asked, [`a1 GET /v1/exports/${id}`, `a2 GET /v1/exports/${id}`, `a4 GET /v1/exports/${id}`]);

  const none = await app.inject({ method: 'GET', url: `/v1/exports/${other}` });
  assert.equal(none.statusCode, 404);
  assert.equal(none.json().error.code, 'NOT_FOUND');
  assert.match(none.json().error.message, /asked: a1, a2, a4; could not ask a2: cannot be reached/);
  // not an export's id: no host is asked
  const n = c.asked.length;
  assert.equal((await app.inject({ method: 'GET', url: '/v1/exports/..%2Fx' })).json().error.code, 'NOT_FOUND');
  assert.equal(c.asked.length, n);
  await app.close();
});

function manifest(name: string): ArchiveManifest {
  const spec = validateCreate({ name, image: 'tiny', cpus: 2, memory: '192M' }, { cpus: 4, memory: 8 * 1024 ** 3, cpuList: [0, 1, 2, 3] }).spec;
  return {
    format: ARCHIVE_FORMAT, version: 1, createdAt: '2026-12-01T00:00:00.000Z', instance: { name, spec },
    image: { name: 'tiny', kind: 'kernel', digest: 'd'.repeat(64) }, consistency: 'stopped',
    files: [{ role: 'root', name: 'disks/root.qcow2', format: 'qcow2', size: 5000, sha256: 'a'.repeat(64), virtualSize: 134217728 }],
  };
}

/** A tar of a manifest of `name` and a disk of 5000 bytes (what the host checks is not the controller's concern). */
function archive(name: string, first = 'manifest.json'): Buffer {
  const m = encodeManifest(manifest(name));
  const disk = Buffer.alloc(5000, 1);
  return Buffer.concat([
    encodeHeader({ name: first, size: m.length, mtime: 0 }), m, Buffer.alloc(padding(m.length)),
    encodeHeader({ name: 'disks/root.qcow2', size: disk.length, mtime: 0 }), disk, Buffer.alloc(padding(disk.length)), endBlocks(),
  ]);
}

const upload = (app: FastifyInstance, body: Buffer, url = '/v1/instances/import', headers: Record<string, string> = {}) => app.inject({
  method: 'POST', url, headers: { 'content-type': 'application/x-tar', ...headers }, payload: Readable.from([body.subarray(0, 700), body.subarray(700)]),
});

test('an import is placed from its manifest (on the target when given), the whole archive relayed, and listed from the result', async () => {
  const c = cluster(hosts, [], {
    'a2 POST /v1/instances/import': job({ type: 'progress', step: 'receive', message: 'x' }, { type: 'result', instance: view('web') }),
    'a1 POST /v1/instances/import?name=web3': job({ type: 'result', instance: view('web3') }),
  });
  const app = await appOf(c.d);
  const tar = archive('web');
  const r = await upload(app, tar);
  assert.deepEqual(lines(r.body)[1], { type: 'result', instance: { ...view('web'), host: 'a2' } });
  assert.deepEqual(c.placed.map((p) => [p.name, p.host, p.cpus, p.memory]), [['web', undefined, 2, 192 << 20]]);
  assert.deepEqual(c.uploaded[0], tar, 'the host gets every byte, the manifest read here included');
  assert.equal((c.table.get('web')!.view as { name: string }).name, 'web');

  const t = await upload(app, tar, '/v1/instances/import?name=web3', { 'x-corral-target': 'a1' });
  assert.equal(lines(t.body)[0].instance.host, 'a1');
  assert.deepEqual([c.placed[1]!.name, c.placed[1]!.host], ['web3', 'a1']);
  assert.match(c.placed[1]!.why!, /imported from an archive of "web", on host a1 as asked/);
  assert.deepEqual(c.uploaded[1], tar);
  await app.close();
});

test('an import over a name taken, or of a file that is no archive, is refused before a host is asked; a host\'s refusal leaves no row', async () => {
  const c = cluster(hosts, [{ name: 'web', host: 'a1', cpus: 1, memory: 1 }], {
    'a2 POST /v1/instances/import?name=web4': job({ type: 'progress', step: 'receive', message: 'x' }, { type: 'error', error: { code: 'INVALID_ARCHIVE', message: 'the archive is not valid: sha256' } }),
    'a2 POST /v1/instances/import?name=web5': refusal(409, 'ALREADY_EXISTS', 'instance "web5" already exists'),
  });
  const app = await appOf(c.d);
  const named = await upload(app, archive('x'), '/v1/instances/import?name=web');
  assert.deepEqual([named.statusCode, named.json().error.code], [409, 'ALREADY_EXISTS']);
  assert.match(named.json().error.message, /on host a1/);
  const fromManifest = await upload(app, archive('web'));
  assert.equal(fromManifest.json().error.code, 'ALREADY_EXISTS');
  const notOurs = await upload(app, archive('x', 'README'));
  assert.deepEqual([notOurs.statusCode, notOurs.json().error.code], [400, 'INVALID_ARCHIVE']);
  const cut = await upload(app, archive('x').subarray(0, 600));
  assert.equal(cut.json().error.code, 'INVALID_ARCHIVE');
  const extra = await upload(app, archive('x'), '/v1/instances/import?nmae=x');
  assert.deepEqual([extra.json().error.code, extra.json().error.field], ['INVALID_SPEC', 'nmae']);
  assert.deepEqual(c.asked, []);
  assert.deepEqual(c.placed, []);

  const bad = await upload(app, archive('x'), '/v1/instances/import?name=web4');
  assert.equal(lines(bad.body)[1].error.code, 'INVALID_ARCHIVE');
  const there = await upload(app, archive('x'), '/v1/instances/import?name=web5');
  assert.deepEqual([there.statusCode, there.json().error.code], [409, 'ALREADY_EXISTS']);
  assert.deepEqual([...c.table.keys()], ['web'], 'nothing left of the refused imports');
  await app.close();
});
