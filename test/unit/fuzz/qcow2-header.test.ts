/**
 * Fuzzing of the import's inspection with crafted qcow2 headers (src/storage/inspect.ts, then the whole
 * ImageStore.import over a temporary data dir with the real qemu-img under its limits). Whatever the header says:
 * a coded 4xx refusal or an accurate image, never an uncoded error or a 5xx, no hang, no staging folder or temp file
 * left behind.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CorralError, isCorralError } from '../../../src/core/errors.js';
import { checkImageHeader, checkImgInfo, QCOW2_MAGIC } from '../../../src/storage/inspect.js';
import { ImageStore } from '../../../src/storage/images.js';
import { crafted, readField, render } from './qcow2-craft.js';

const SEED = 20261130;
const dir = mkdtempSync(join(tmpdir(), 'corral-fuzz-qcow2-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const entries = (d: string): string[] => (existsSync(d) ? readdirSync(d) : []);

const hasQemuImg = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

function expectRefusal(e: unknown): CorralError {
  assert.ok(isCorralError(e), `not a coded error: ${String((e as Error)?.stack ?? e)}`);
  assert.ok(e.status < 500, `${e.code} (${e.status}): ${e.message}`);
  return e;
}

test('the header check: a coded refusal exactly when the header names a backing file, encryption, an external data file or hides qcow2 as raw', () => {
  const file = join(dir, 'header.img');
  fc.assert(
    fc.property(crafted, fc.constantFrom('qcow2' as const, 'raw' as const), (c, format) => {
      const bytes = render(c);
      writeFileSync(file, bytes);
      let refused: CorralError | null = null;
      try {
        checkImageHeader(file, format);
      } catch (e) {
        refused = expectRefusal(e);
        assert.equal(refused.code, 'INVALID_IMAGE');
      }
      const magic = bytes.length >= 4 && bytes.subarray(0, 4).equals(QCOW2_MAGIC);
      if (format === 'raw') {
        assert.equal(refused?.details.field, magic ? 'format' : undefined);
        return;
      }
      if (!magic || bytes.length < 20) return assert.equal(refused, null);
      const backing = readField(bytes, 'backingOffset') !== 0n && readField(bytes, 'backingSize') > 0n;
      const encrypted = !backing && bytes.length >= 36 && readField(bytes, 'cryptMethod') !== 0n;
      const dataFile = !backing && !encrypted && readField(bytes, 'version') >= 3n && bytes.length >= 80 && (readField(bytes, 'incompatible') & 4n) !== 0n;
      assert.equal(refused?.details.field, backing ? 'backing-filename' : encrypted ? 'encrypted' : dataFile ? 'format-specific.data.data-file' : undefined);
    }),
    { seed: SEED, numRuns: 400 },
  );
});

/** qemu-img's own view of a stored image. */
function info(path: string, format: string): Record<string, unknown> {
  return JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '-f', format, path], { encoding: 'utf8' })) as Record<string, unknown>;
}

test('import of crafted images: a coded 4xx refusal or an accurate, standalone image; nothing left behind', { skip: !hasQemuImg && 'qemu-img is not installed' }, async (t) => {
  const outcomes = new Map<string, number>();
  const dataDir = join(dir, 'data');
  const store = new ImageStore(dataDir);
  let n = 0;
  let imported = 0;
  await fc.assert(
    fc.asyncProperty(crafted, fc.constantFrom('qcow2' as const, 'qcow2' as const, 'raw' as const), async (c, format) => {
      const src = join(dir, `src-${n}.img`);
      const name = `f${n++}`;
      const bytes = render(c);
      writeFileSync(src, bytes);
      try {
        let timer: NodeJS.Timeout | undefined;
        const hang = new Promise<never>((_r, reject) => { timer = setTimeout(() => reject(new Error('import hung for 60 s')), 60_000); });
        let record;
        try {
          record = await Promise.race([store.import(name, src, format), hang]);
        } catch (e) {
          const why = String(expectRefusal(e).details.reason ?? expectRefusal(e).message).replace(/'[^']*'/g, "'…'").slice(0, 70);
          outcomes.set(why, (outcomes.get(why) ?? 0) + 1);
          return;
        } finally {
          clearTimeout(timer);
        }
        imported++;
        const got = info(record.disk, format);
        assert.equal(got['backing-filename'], undefined);
        assert.equal((got['format-specific'] as { data?: Record<string, unknown> } | undefined)?.data?.['data-file'], undefined);
        assert.notEqual(got.encrypted, true, 'an encrypted image was imported');
        assert.equal(record.virtualSize, got['virtual-size']);
        assert.equal(record.virtualSize, format === 'raw' ? Math.ceil(bytes.length / 512) * 512 : Number(readField(bytes, 'size')));
        store.remove(name);
      } finally {
        rmSync(src, { force: true });
        assert.deepEqual(entries(store.dir).filter((f) => f.startsWith('.')), [], 'a staging folder was left behind');
      }
    }),
    { seed: SEED, numRuns: 60 },
  );
  assert.deepEqual(entries(store.dir), []);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('src-')), []);
  t.diagnostic(`imported ${imported}; refused: ${JSON.stringify([...outcomes].sort((a, b) => b[1] - a[1]))}`);
  assert.ok(imported > 0, 'no crafted image was ever accepted: the generator only makes garbage');
});

test('an encrypted qcow2 (AES, LUKS) is refused as an image, not failed later as a host error (regression: AES gave QEMU_FAILED, a 500)', { skip: !hasQemuImg && 'qemu-img is not installed' }, async () => {
  const store = new ImageStore(join(dir, 'enc'));
  for (const cryptMethod of [1n, 2n]) {
    const src = join(dir, `enc-${cryptMethod}.img`);
    writeFileSync(src, render({ fields: { cryptMethod }, magic: true, extensions: [], backingName: '', truncate: null }));
    await assert.rejects(store.import('enc', src, 'qcow2'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_IMAGE' && e.details.field === 'encrypted');
    rmSync(src);
  }
  assert.throws(() => checkImgInfo({ 'virtual-size': 1, filename: '/x', format: 'qcow2', encrypted: true }, 'qcow2'), (e: unknown) => isCorralError(e) && e.details.field === 'encrypted');
});

test('an image claiming more than 64 TiB is refused as an image (regression: 2^56 bytes failed in qemu-img convert as QEMU_FAILED, a 500)', { skip: !hasQemuImg && 'qemu-img is not installed' }, async () => {
  const store = new ImageStore(join(dir, 'huge'));
  const src = join(dir, 'huge.img');
  const M = 1n << 20n;
  for (const fields of [{ size: 1n << 50n, l1Size: 1n << 21n }, { size: 1n << 56n, clusterBits: 21n, l1Size: 1n << 17n, refcountTableOffset: 2n * M, l1Offset: 4n * M }]) {
    writeFileSync(src, render({ fields, magic: true, extensions: [], backingName: '', truncate: null }));
    await assert.rejects(store.import('huge', src, 'qcow2'), (e: unknown) => isCorralError(e) && e.code === 'INVALID_IMAGE' && e.details.field === 'virtual-size');
  }
  rmSync(src);
  assert.deepEqual(entries(store.dir), []);
});
