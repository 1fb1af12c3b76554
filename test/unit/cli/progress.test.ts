import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProgressPrinter } from '../../../src/cli/images.js';

function sink(): { out: NodeJS.WriteStream; text: () => string } {
  let buf = '';
  return { out: { write: (s: string) => { buf += s; return true; } } as unknown as NodeJS.WriteStream, text: () => buf };
}

test('without a terminal, progress prints a line per step and per 10%, not per event', () => {
  const s = sink();
  const p = new ProgressPrinter(s.out, false);
  for (let i = 0; i <= 100; i++) p.show({ type: 'progress', step: 'copy', message: 'copying', percent: i });
  p.show({ type: 'progress', step: 'done', message: 'imported' });
  p.end();
  const lines = s.text().trim().split('\n');
  assert.equal(lines.length, 12);
  assert.equal(lines[0], '[copy] copying 0%');
  assert.equal(lines[10], '[copy] copying 100%');
  assert.equal(lines[11], '[done] imported');
});

test('on a terminal, a step is redrawn in place and ends with a newline', () => {
  const s = sink();
  const p = new ProgressPrinter(s.out, true);
  p.show({ type: 'progress', step: 'copy', percent: 10 });
  p.show({ type: 'progress', step: 'copy', percent: 20 });
  p.show({ type: 'progress', step: 'done' });
  p.end();
  assert.equal(s.text(), '\r\x1b[K[copy] 10%\r\x1b[K[copy] 20%\n[done]\n');
});
