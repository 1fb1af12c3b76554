import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stripTerminalQueries, TerminalQueryFilter } from '../../../src/cli/terminal-queries.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

test('terminal queries go, every other byte stays', () => {
  const input = b('~ # \x1b[6n\x1b[5n\x1b[?6n\x1b[c\x1b[0c\x1b[>c\x1b[=0c ok\x1b[1;32mgreen\x1b[0m\x1b[2J\x1b[10;20H\r\n\x00\xff\xc3\xa9');
  assert.deepEqual(stripTerminalQueries(input), b('~ #  ok\x1b[1;32mgreen\x1b[0m\x1b[2J\x1b[10;20H\r\n\x00\xff\xc3\xa9'));
});

test('a query split across chunks is still dropped; a lone ESC at the end waits for the next chunk', () => {
  const f = new TerminalQueryFilter();
  const out: Buffer[] = [];
  for (const part of ['~ # \x1b', '[', '6', 'n', 'ls\r\n\x1b', '[1m', 'bold\x1b']) out.push(f.push(b(part)));
  out.push(f.flush());
  assert.equal(Buffer.concat(out).toString('latin1'), '~ # ls\r\n\x1b[1mbold\x1b');
});
