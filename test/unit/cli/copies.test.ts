import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXPORT_BYTES, runCli, useFakeApi } from './fake-api.js';

const fake = useFakeApi();

test('export: the prepared archive is downloaded into FILE (through FILE.part), progress on stderr', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-export-'));
  try {
    const file = join(dir, 'web1.tar');
    const r = await runCli(['export', 'web1', file], fake.env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(file).equals(EXPORT_BYTES));
    assert.ok(!existsSync(`${file}.part`));
    assert.match(r.stderr, /\[compress\] flattening and compressing the root disk 50%/);
    assert.match(r.stdout, /instance web1: exported to .*web1\.tar \(4200 bytes; its disk uses 4096; a point-in-time backup of the running guest\)/);
    const urls = fake.api.requests.map((q) => `${q.method} ${q.url}`);
    assert.deepEqual(urls.slice(-2), ['POST /v1/instances/web1/export', 'GET /v1/exports/x1']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('export: a download cut short fails and leaves neither FILE nor FILE.part; --json with - is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-export-'));
  try {
    const file = join(dir, 'db1.tar');
    const r = await runCli(['export', 'db1', file], fake.env);
    assert.notEqual(r.code, 0);
    assert.ok(!existsSync(file) && !existsSync(`${file}.part`));
    const j = await runCli(['export', 'web1', '-', '--json'], fake.env);
    assert.notEqual(j.code, 0);
    assert.match(j.stderr, /--json prints on stdout/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('copy: the new name and the flags in the body (--snapshots carries the snapshots; none without it)', async () => {
  const r = await runCli(['copy', 'web1', 'web5', '--snapshots'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /instance web5: copied from web1 with its snapshots, stopped/);
  const q = fake.api.requests.at(-1)!;
  assert.equal(`${q.method} ${q.url}`, 'POST /v1/instances/web1/copy');
  assert.deepEqual(JSON.parse(q.body), { name: 'web5', snapshots: true });
  const plain = await runCli(['copy', 'web1', 'web6', '--full'], fake.env);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /instance web6: copied from web1 \(full\), stopped/);
  assert.deepEqual(JSON.parse(fake.api.requests.at(-1)!.body), { name: 'web6', full: true });
});

test('import: the file is the request body (application/x-tar, its length), the name in the query', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-import-'));
  try {
    const file = join(dir, 'a.tar');
    writeFileSync(file, EXPORT_BYTES);
    const r = await runCli(['import', file, 'web9'], fake.env);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /instance web9: imported, stopped/);
    const q = fake.api.requests.at(-1)!;
    assert.equal(`${q.method} ${q.url}`, 'POST /v1/instances/import?name=web9');
    assert.equal(q.headers['content-type'], 'application/x-tar');
    assert.equal(q.headers['content-length'], String(EXPORT_BYTES.length));
    assert.equal(q.body, EXPORT_BYTES.toString('utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('image import --upload: the image file is the request body (application/octet-stream, its length), the format in the query', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-cli-upload-'));
  try {
    const file = join(dir, 'disk.raw');
    writeFileSync(file, Buffer.alloc(3000, 7));
    const r = await runCli(['image', 'import', 'disk2', file, '--format', 'raw', '--upload', '--json'], fake.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).name, 'disk2');
    assert.match(r.stderr, /\[receive\] receiving disk2/);
    const q = fake.api.requests.at(-1)!;
    assert.equal(`${q.method} ${q.url}`, 'POST /v1/images/disk2/upload?format=raw');
    assert.equal(q.headers['content-type'], 'application/octet-stream');
    assert.equal(q.headers['content-length'], '3000');
    assert.equal(q.body, Buffer.alloc(3000, 7).toString('utf8'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
