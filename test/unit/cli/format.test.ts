/** Pure helpers of the CLI: tables, field listings, SSE parsing, progress lines, number parsing. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fields, keyValues, table } from '../../../src/cli/format.js';
import { sseParser, eventLine, type SseMessage } from '../../../src/cli/events.js';
import { progressLine } from '../../../src/cli/images.js';
import { statusLine, wholeNumber, type Instance } from '../../../src/cli/instances.js';

test('table pads columns and not the last one', () => {
  assert.equal(table(['A', 'BB'], [['xxx', 'y'], ['z', 'long value']]), 'A    BB\nxxx  y\nz    long value');
});

test('fields flattens nested objects, joins scalar arrays, uses formatters by dotted path', () => {
  const pairs = fields({ a: 1, b: { c: null, d: 'x' }, e: [1, 'two'], f: [{ g: 1 }], h: {}, i: true }, { 'b.d': (v) => `<${String(v)}>` });
  assert.deepEqual(pairs, [['a', '1'], ['b.c', '-'], ['b.d', '<x>'], ['e', '1, two'], ['f', '[{"g":1}]'], ['h', '{}'], ['i', 'true']]);
  assert.equal(keyValues([['a', '1'], ['long', '2']]), 'a:    1\nlong: 2');
});

test('sseParser: ids, events, multi-line data, comments, CR-free lines', () => {
  const got: SseMessage[] = [];
  const feed = sseParser((m) => got.push(m));
  for (const l of [': hello', 'id: 1', 'event: x', 'data: {"a":', 'data: 1}', '', '', 'data:plain', '']) feed(l);
  assert.deepEqual(got, [{ id: '1', event: 'x', data: '{"a":\n1}' }, { id: undefined, event: undefined, data: 'plain' }]);
  assert.equal(eventLine({ time: 'T', type: 'instance.state', instance: null, data: { a: 1 } }), 'T instance.state - {"a":1}');
});

test('progressLine', () => {
  assert.equal(progressLine({ type: 'progress', step: 'download', message: 'linux-image', percent: 41.6 }), '[download] linux-image 42%');
  assert.equal(progressLine({ type: 'progress', step: 'pack' }), '[pack]');
});

test('wholeNumber is strict; statusLine', () => {
  assert.equal(wholeNumber('4'), 4);
  for (const bad of ['two', '1.5', '3x', '', '-1']) assert.throws(() => wholeNumber(bad));
  const i = { name: 'web1', state: 'running', pid: 12 } as Instance;
  assert.equal(statusLine(i), 'web1: running (pid 12)');
  assert.equal(statusLine({ ...i, state: 'crashed', pid: null, lastError: 'boom' }), 'web1: crashed (last error: boom)');
});
