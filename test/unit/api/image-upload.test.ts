/**
 * POST /v1/images/:name/upload against a real image store and qemu-img, over a real socket: an upload is imported
 * as a host file is, and an upload that is too large, refused or cut off leaves nothing in the images folder.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import { CorralError } from '../../../src/core/errors.js';
import type { EventBus } from '../../../src/services/events.js';
import { ImageService } from '../../../src/services/images.js';
import { receiveToFile } from '../../../src/services/upload-file.js';
import { ImageStore } from '../../../src/storage/images.js';
import type { Store } from '../../../src/store/store.js';
import { SKIP_NO_QEMU_IMG } from '../fixtures.js';
import { recordingServices } from './recording-services.js';

const skip = SKIP_NO_QEMU_IMG;
const MAX = 4 * 1024 * 1024;
let dir = '';
let imagesDir = '';
let app: FastifyInstance;
let sock = '';
const published: string[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'corral-upload-'));
  const store = new ImageStore(join(dir, 'data'));
  imagesDir = store.dir;
  const events = { publish: (kind: string) => published.push(kind) } as unknown as EventBus;
  const images = new ImageService(join(dir, 'data'), store, { listInstances: () => [] } as unknown as Store, events, MAX);
  app = await buildApi(recordingServices([], { images }));
  sock = join(dir, 'api.sock');
  await app.listen({ path: sock });
});
after(async () => app?.close());

interface Reply { status: number; text: string; lines: Array<Record<string, unknown>> }

/** POST the body (a buffer, or chunks written one by one); `length` overrides Content-Length (null: chunked). */
function upload(name: string, format: string, body: Buffer, length: number | null = body.length): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream' };
    if (length !== null) headers['content-length'] = length;
    else headers['transfer-encoding'] = 'chunked';
    const req = request({ socketPath: sock, method: 'POST', path: `/v1/images/${name}/upload?format=${format}`, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { text += c; });
      res.on('end', () => {
        const lines = res.headers['content-type']?.startsWith('application/x-ndjson') ? text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) : [];
        resolve({ status: res.statusCode ?? 0, text, lines });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** What the images folder holds besides committed images: staging folders, uploads. */
const leftovers = (): string[] => (existsSync(imagesDir) ? readdirSync(imagesDir).filter((n) => n.startsWith('.')) : []);

function qcow2(name: string, size: string): Buffer {
  const f = join(dir, name);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', f, size]);
  return readFileSync(f);
}

test('an uploaded qcow2 is received with progress, imported and listed, and its staged file is gone', { skip }, async () => {
  const r = await upload('up1', 'qcow2', qcow2('up1.qcow2', '8M'));
  assert.equal(r.status, 200, r.text);
  const receive = r.lines.filter((l) => l.step === 'receive').map((l) => l.percent);
  assert.equal(receive.at(-1), 100, r.text);
  assert.ok(r.lines.some((l) => l.step === 'inspect'), r.text); // the host-file import's own steps follow
  const result = r.lines.at(-1)!;
  assert.equal(result.type, 'result', r.text);
  assert.equal((result.image as { virtualSize: number }).virtualSize, 8 * 1024 * 1024);
  const listed = await app.inject({ method: 'GET', url: '/v1/images/up1' });
  assert.equal(listed.json().format, 'qcow2');
  assert.ok(statSync(join(imagesDir, 'up1', 'disk.qcow2')).isFile());
  assert.deepEqual(leftovers(), []);
  assert.ok(published.includes('image.imported'));
  const again = await upload('up1', 'qcow2', qcow2('up1b.qcow2', '1M'));
  assert.equal(again.status, 409);
  assert.equal(JSON.parse(again.text).error.code, 'ALREADY_EXISTS');
});

test('an upload larger than the cap is TOO_LARGE before anything is written', { skip }, async () => {
  const r = await upload('big', 'raw', Buffer.alloc(MAX + 512));
  assert.equal(r.status, 413, r.text);
  const e = JSON.parse(r.text).error;
  assert.equal(e.code, 'TOO_LARGE');
  assert.equal(e.field, 'file');
  assert.deepEqual(leftovers(), []);
  assert.equal(existsSync(join(imagesDir, 'big')), false);
});

test('an upload without its Content-Length is refused (INVALID_SPEC), nothing written', { skip }, async () => {
  const r = await upload('chunked', 'raw', Buffer.alloc(4096), null);
  assert.equal(r.status, 400, r.text);
  assert.equal(JSON.parse(r.text).error.code, 'INVALID_SPEC');
  assert.deepEqual(leftovers(), []);
});

test('a file that is not what its format says is INVALID_IMAGE (field format) and leaves no file', { skip }, async () => {
  const r = await upload('notqcow', 'qcow2', Buffer.from('this is not a qcow2 image\n'.repeat(100)));
  assert.equal(r.status, 200, r.text); // the stream started: the refusal is its last line
  const last = r.lines.at(-1)!;
  assert.equal(last.type, 'error', r.text);
  assert.equal((last.error as { code: string }).code, 'INVALID_IMAGE');
  assert.equal((last.error as { field: string }).field, 'format');
  assert.deepEqual(leftovers(), []);
  assert.equal(existsSync(join(imagesDir, 'notqcow')), false);
});

test('a client that goes away midway leaves nothing', { skip }, async () => {
  const total = 2 * 1024 * 1024;
  const req = request({ socketPath: sock, method: 'POST', path: '/v1/images/cut/upload?format=raw', headers: { 'content-type': 'application/octet-stream', 'content-length': total } });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(256 * 1024, 1));
  // the daemon is writing the staged file: a staging folder holding part of the upload
  const deadline = Date.now() + 20_000;
  let staged = false;
  while (!staged && Date.now() < deadline) {
    staged = leftovers().some((d) => readdirSync(join(imagesDir, d)).some((f) => statSync(join(imagesDir, d, f)).size > 0));
    if (!staged) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(staged, `no staged upload appeared: ${leftovers().join(', ')}`);
  req.destroy();
  while (leftovers().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(leftovers(), []);
  assert.equal(existsSync(join(imagesDir, 'cut')), false);
  const list = await app.inject({ method: 'GET', url: '/v1/images' });
  assert.ok(!list.json().images.some((i: { name: string }) => i.name === 'cut'));
});

test('receiveToFile stops before the chunk that would pass the cap, and at a short body', async () => {
  const f = join(dir, 'capped');
  await assert.rejects(receiveToFile(Readable.from([Buffer.alloc(3), Buffer.alloc(3)]), f, { length: 6, max: 4, what: 'x' }), (e: unknown) => e instanceof CorralError && e.code === 'TOO_LARGE');
  assert.equal(statSync(f).size, 3);
  const g = join(dir, 'short');
  await assert.rejects(receiveToFile(Readable.from([Buffer.alloc(3)]), g, { length: 6, max: 100, what: 'x' }), (e: unknown) => e instanceof CorralError && e.code === 'INVALID_SPEC' && /3 of 6/.test(e.message));
  writeFileSync(join(dir, 'exists'), 'x');
  await assert.rejects(receiveToFile(Readable.from([Buffer.alloc(1)]), join(dir, 'exists'), { length: 1, max: 100, what: 'x' }));
});
