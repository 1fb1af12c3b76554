/** Crafted qcow2 files for fuzzing the import's inspection: a minimal valid image whose header fields can be set to anything. */
import fc from 'fast-check';

export const CLUSTER = 65536;
const MiB = 1024 * 1024;

/** The header fields (qcow2 v3 layout, big-endian), by name: [offset, width in bytes]. */
export const FIELDS = {
  version: [4, 4], backingOffset: [8, 8], backingSize: [16, 4], clusterBits: [20, 4], size: [24, 8], cryptMethod: [32, 4], l1Size: [36, 4],
  l1Offset: [40, 8], refcountTableOffset: [48, 8], refcountTableClusters: [56, 4], nbSnapshots: [60, 4], snapshotsOffset: [64, 8],
  incompatible: [72, 8], compatible: [80, 8], autoclear: [88, 8], refcountOrder: [96, 4], headerLength: [100, 4],
} as const;
export type Field = keyof typeof FIELDS;

/** A valid, empty 1 MiB qcow2 v3 image: header, refcount table, refcount block, L1 table, one cluster each. */
export function baseImage(): Buffer {
  const b = Buffer.alloc(4 * CLUSTER);
  b.write('QFI\xfb', 0, 'latin1');
  const set: Partial<Record<Field, bigint>> = {
    version: 3n, clusterBits: 16n, size: BigInt(MiB), l1Size: 1n, l1Offset: 3n * BigInt(CLUSTER), refcountTableOffset: BigInt(CLUSTER),
    refcountTableClusters: 1n, refcountOrder: 4n, headerLength: 104n,
  };
  for (const [f, v] of Object.entries(set)) writeField(b, f as Field, v);
  b.writeBigUInt64BE(2n * BigInt(CLUSTER), CLUSTER); // refcount table -> the refcount block
  for (let c = 0; c < 4; c++) b.writeUInt16BE(1, 2 * CLUSTER + 2 * c); // clusters 0..3 are used once
  return b;
}

export function writeField(b: Buffer, f: Field, v: bigint): void {
  const [at, width] = FIELDS[f];
  if (width === 8) b.writeBigUInt64BE(BigInt.asUintN(64, v), at);
  else b.writeUInt32BE(Number(BigInt.asUintN(32, v)), at);
}

export function readField(b: Buffer, f: Field): bigint {
  const [at, width] = FIELDS[f];
  return width === 8 ? b.readBigUInt64BE(at) : BigInt(b.readUInt32BE(at));
}

const u64 = fc.oneof(
  fc.constantFrom(0n, 1n, 104n, 512n, BigInt(CLUSTER), 3n * BigInt(CLUSTER), 4n * BigInt(CLUSTER), 1n << 31n, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, 1n << 62n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.bigInt({ min: 0n, max: 5n * BigInt(CLUSTER) }),
);
const u32 = fc.oneof(fc.constantFrom(0n, 1n, 2n, 3n, 4n, 9n, 16n, 21n, 22n, 31n, 63n, 64n, 1023n, 1024n, 0x7fffffffn, 0xffffffffn), fc.bigInt({ min: 0n, max: 0xffffffffn }));
const features = fc.oneof(fc.constantFrom(0n, 1n, 2n, 4n, 8n, 16n, 32n, 4n | 1n, 1n << 63n, (1n << 64n) - 1n), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }));

/** Header extensions: type, declared length, data (the data file name, a backing format, garbage). */
const extension = fc.record({
  type: fc.oneof(fc.constantFrom(0x44415441, 0xe2792aca, 0x6803f857, 0x23852875, 0x0537be77, 0), fc.nat({ max: 0xffffffff })),
  data: fc.oneof(fc.constantFrom('/etc/passwd', 'json:{"file":{"filename":"/etc/shadow"}}', 'qcow2', 'raw', ''), fc.string({ maxLength: 64 })),
  lie: fc.option(fc.nat({ max: 0xffffffff }), { freq: 4 }),
});

export interface Crafted {
  fields: Partial<Record<Field, bigint>>;
  magic: boolean;
  extensions: Array<{ type: number; data: string; lie: number | null }>;
  /** where the backing file name would be written, and the name */
  backingName: string;
  /** cut the file to this many bytes */
  truncate: number | null;
}

/** Each field's values: the usual ones, extremes, and anything. */
const fieldValues: Record<Field, fc.Arbitrary<bigint>> = {
  version: fc.oneof(fc.constantFrom(2n, 3n, 4n), u32), backingOffset: u64, backingSize: u32, clusterBits: fc.oneof(fc.constantFrom(8n, 9n, 12n, 16n, 21n, 22n), u32),
  size: u64, cryptMethod: fc.oneof(fc.constantFrom(1n, 2n, 3n), u32), l1Size: u32, l1Offset: u64, refcountTableOffset: u64, refcountTableClusters: u32,
  nbSnapshots: u32, snapshotsOffset: u64, incompatible: features, compatible: features, autoclear: features, refcountOrder: fc.oneof(fc.constantFrom(0n, 6n, 7n), u32),
  headerLength: fc.oneof(fc.constantFrom(72n, 100n, 104n, 112n, 4096n), u32),
};

/** A few fields changed at once (most images that change many are refused for the first one qemu-img reads). */
const someFields: fc.Arbitrary<Partial<Record<Field, bigint>>> = fc.uniqueArray(fc.constantFrom(...(Object.keys(FIELDS) as Field[])), { maxLength: 4 })
  .chain((names) => fc.record(Object.fromEntries(names.map((f) => [f, fieldValues[f]])) as Record<Field, fc.Arbitrary<bigint>>)) as fc.Arbitrary<Partial<Record<Field, bigint>>>;

export const crafted: fc.Arbitrary<Crafted> = fc.record({
  fields: someFields,
  magic: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  extensions: fc.oneof(fc.array(extension, { maxLength: 0 }), fc.array(extension, { maxLength: 3 })),
  backingName: fc.oneof(fc.constantFrom('/etc/passwd', 'json:{"file":{"driver":"file","filename":"/etc/shadow"}}', 'nbd://127.0.0.1:10809', ''), fc.string({ maxLength: 40 })),
  truncate: fc.option(fc.oneof(fc.nat({ max: 120 }), fc.nat({ max: 4 * CLUSTER })), { freq: 6 }),
});

/** The file's bytes: the base image with the crafted fields, extensions after the header, and a backing name where the header points. */
export function render(c: Crafted): Buffer {
  const b = baseImage();
  if (!c.magic) b.write('QFI\x00', 0, 'latin1');
  for (const [f, v] of Object.entries(c.fields)) writeField(b, f as Field, v);
  let at = 104;
  for (const e of c.extensions) {
    const data = Buffer.from(e.data, 'utf8');
    if (at + 8 + data.length + 8 > 4096) break;
    b.writeUInt32BE(e.type, at);
    b.writeUInt32BE(e.lie ?? data.length, at + 4);
    data.copy(b, at + 8);
    at += 8 + Math.ceil(data.length / 8) * 8;
  }
  const bo = readField(b, 'backingOffset');
  if (bo > 0n && bo < BigInt(b.length)) Buffer.from(c.backingName, 'utf8').copy(b, Number(bo), 0, Math.max(0, Math.min(1023, b.length - Number(bo))));
  return c.truncate === null ? b : b.subarray(0, Math.min(c.truncate, b.length));
}
