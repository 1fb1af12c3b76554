/**
 * Host labels: what a key and a value may be, the command line's KEY=VALUE and KEY- forms, and a host's labels in
 * the cluster database (set, overwritten, removed in one statement; a bad change, or one to a host that is not
 * there, changes nothing).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { isCorralError } from '../../../src/core/errors.js';
import {
  formatLabels, MAX_LABELS, parseLabelArgs, parseLabelChangeArgs, validateLabelChanges, validateLabels,
} from '../../../src/core/labels.js';
import { ClusterStore } from '../../../src/cluster/cluster-store.js';
import { openClusterDb, type ClusterDb } from '../../../src/cluster/db.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

const invalid = (field: string, key: string | undefined, ...words: string[]) => (e: unknown): boolean => {
  assert.ok(isCorralError(e), String(e));
  assert.equal(e.code, 'INVALID_SPEC');
  assert.equal(e.details.field, field);
  assert.equal(e.details.key, key);
  for (const w of words) assert.ok(e.message.includes(w), `${e.message} says ${w}`);
  return true;
};

test('label keys: lower-case letters, digits and . _ / -, starting and ending with a letter or digit, at most 63', () => {
  const good = { zone: 'eu-1', 'disk.type': 'NVMe', 'example.com/gpu': 'a100', a: 'x', '9': 'Y_z.1', [`k${'x'.repeat(61)}k`]: 'v'.repeat(63) };
  assert.deepEqual(validateLabels('labels', good), good);
  for (const key of ['', 'Zone', '-zone', 'zone-', '.zone', 'zone/', 'zo ne', 'zöne', '__proto__', 'k'.repeat(64), 'a=b']) {
    assert.throws(() => validateLabels('labels', { [key]: 'v' }), invalid('labels', key, 'is not a label key'), key);
  }
});

test('label values: 1 to 63 of letters, digits, . _ and -; null only removes, in a change', () => {
  for (const value of ['', 'a b', 'x'.repeat(64), 'a/b', 'é', 'a=b']) {
    assert.throws(() => validateLabels('hostLabels', { zone: value }), invalid('hostLabels', 'zone', 'of label zone is not a label value'), value);
  }
  for (const value of [1, true, null, ['a'], { a: 'b' }]) assert.throws(() => validateLabels('labels', { zone: value }), invalid('labels', 'zone'), String(value));
  assert.deepEqual(validateLabelChanges('labels', { zone: 'b', gone: null }), { zone: 'b', gone: null });
  assert.throws(() => validateLabelChanges('labels', { zone: 'b', 'Bad': null }), invalid('labels', 'Bad'));
  for (const v of [null, 'zone=a', ['zone=a'], 3]) assert.throws(() => validateLabels('labels', v), invalid('labels', undefined, 'must be an object'));
  const many = Object.fromEntries(Array.from({ length: MAX_LABELS + 1 }, (_, i) => [`k${i}`, 'v']));
  assert.throws(() => validateLabels('labels', many), invalid('labels', undefined, `at most ${MAX_LABELS}`));
});

test('the command line: KEY=VALUE split at the first =, KEY- removes; a key given twice or neither form is refused', () => {
  assert.deepEqual(parseLabelArgs('label', ['zone=a', 'note=x=y', 'empty=']), { zone: 'a', note: 'x=y', empty: '' });
  assert.deepEqual(parseLabelArgs('label', []), {});
  assert.throws(() => parseLabelArgs('label', ['zone']), invalid('label', undefined, '"zone" is not KEY=VALUE'));
  assert.throws(() => parseLabelArgs('label', ['zone-']), invalid('label', undefined, 'not KEY=VALUE'), 'no removals when labels are given');
  assert.throws(() => parseLabelArgs('hostLabels', ['zone=a', 'zone=b']), invalid('hostLabels', 'zone', 'label zone is given twice'));
  assert.deepEqual(parseLabelChangeArgs('labels', ['zone=b', 'rack-', 'x=a-']), { zone: 'b', rack: null, x: 'a-' });
  assert.throws(() => parseLabelChangeArgs('labels', ['zone']), invalid('labels', undefined, 'neither KEY=VALUE (set a label) nor KEY- (remove one)'));
  assert.throws(() => parseLabelChangeArgs('labels', ['zone=b', 'zone-']), invalid('labels', 'zone', 'given twice'));
  // whatever the key, it reaches the controller to be judged there, never the object's prototype
  const odd = parseLabelArgs('label', ['__proto__=x']);
  assert.deepEqual(Object.keys(odd), ['__proto__']);
  assert.throws(() => validateLabels('labels', odd), invalid('labels', '__proto__'));
});

test('labels print as k=v,k2=v2 by key, - for none', () => {
  assert.equal(formatLabels({ zone: 'a', disk: 'ssd' }), 'disk=ssd,zone=a');
  assert.equal(formatLabels({}), '-');
  assert.equal(formatLabels(null), '-');
});

let server: TestPostgres;
let db: ClusterDb;
let store: ClusterStore;
before(async () => {
  server = await startPostgres();
  db = await openClusterDb(server.url);
  store = new ClusterStore(db.pool);
});
after(async () => {
  await db?.close();
  await server?.stop();
});

let n = 0;
const addHost = (name: string, labels?: Record<string, string>) => store.insertHost({
  name, uuid: randomUUID(), address: `https://10.0.1.${++n}:7443`, certSerial: `0b${n}`, certFingerprint: `fp-${name}`, ...(labels ? { labels } : {}),
});

test('a host joins with its labels; a bad one is refused and no host is added', async () => {
  assert.deepEqual((await addHost('l1', { zone: 'a' })).labels, { zone: 'a' });
  assert.deepEqual((await addHost('l2')).labels, {});
  await assert.rejects(addHost('l3', { Zone: 'a' }), invalid('labels', 'Zone'));
  assert.equal(await store.getHost('l3'), null);
});

test('labels are set, overwritten and removed in one change; others stay; removing a label the host lacks is no error', async () => {
  let h = await store.setLabels('l1', { disk: 'ssd', rack: 'r1' });
  assert.deepEqual(h.labels, { zone: 'a', disk: 'ssd', rack: 'r1' });
  h = await store.setLabels('l1', { zone: 'b', rack: null, nothere: null });
  assert.deepEqual(h.labels, { zone: 'b', disk: 'ssd' });
  assert.deepEqual((await store.getHost('l1'))!.labels, { zone: 'b', disk: 'ssd' });
  assert.deepEqual((await store.getHost('l2'))!.labels, {}, 'another host is untouched');
  assert.deepEqual((await store.setLabels('l1', {})).labels, { zone: 'b', disk: 'ssd' });
});

test('a bad change, a change to an unknown host, or one past the limit changes nothing', async () => {
  const before = (await store.getHost('l1'))!.labels;
  await assert.rejects(store.setLabels('l1', { zone: 'c', 'bad key': 'x' }), invalid('labels', 'bad key', 'is not a label key'));
  await assert.rejects(store.setLabels('l1', { zone: 'c', disk: 'a b' }), invalid('labels', 'disk', 'is not a label value'));
  assert.deepEqual((await store.getHost('l1'))!.labels, before, 'not even the good part of it');
  await assert.rejects(store.setLabels('nosuch', { zone: 'a' }), (e) => isCorralError(e) && e.code === 'HOST_NOT_FOUND' && /"nosuch"/.test(e.message));
  const fill = Object.fromEntries(Array.from({ length: MAX_LABELS - 2 }, (_, i) => [`k${i}`, 'v']));
  assert.equal(Object.keys((await store.setLabels('l1', fill)).labels).length, MAX_LABELS);
  await assert.rejects(store.setLabels('l1', { one: 'more' }), invalid('labels', undefined, `more than ${MAX_LABELS} labels`));
  assert.equal(Object.keys((await store.setLabels('l1', { one: 'more', k0: null })).labels).length, MAX_LABELS, 'one in, one out');
});
