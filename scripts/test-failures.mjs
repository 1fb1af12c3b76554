// Reads the TAP that `node --test` printed (a file given as the only argument) and prints what failed, short enough to
// be read at the end of a CI log whose tail alone may be kept: each failed test's message (a few lines), then one line
// per failed test. A parent that failed only because a subtest did is left out: its subtest is named.
import { readFileSync } from 'node:fs';

const lines = readFileSync(process.argv[2], 'utf8').split('\n');
const failed = [];
for (let i = 0; i < lines.length; i++) {
  const head = /^(\s*)not ok \d+ - (.*)$/.exec(lines[i]);
  if (!head) continue;
  const indent = head[1].length + 2;
  const block = [];
  if (lines[i + 1]?.trim() === '---') {
    for (let j = i + 2; j < lines.length && lines[j].trim() !== '...'; j++) block.push(lines[j].slice(indent));
  }
  const field = (name) => block.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
  if (field('failureType') === "'subtestsFailed'") continue;
  const where = (field('location') ?? '').replace(/^'|'$/g, '').replace(/^.*\//, '').replace(/:\d+$/, '');
  let message = [];
  const at = block.findIndex((l) => l.startsWith('error: '));
  if (at >= 0) {
    const first = block[at].slice(7);
    if (first === '|-' || first === '|' || first === '>-') {
      for (let j = at + 1; j < block.length && /^\s/.test(block[j]); j++) message.push(block[j].trim());
    } else message.push(first.replace(/^'|'$/g, ''));
  }
  failed.push({ name: head[2], where, message: message.filter(Boolean) });
}
if (failed.length === 0) process.exit(0);
const cut = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
console.log(`# ---- what failed: ${failed.length} test(s) ----`);
for (const f of failed) {
  console.log(`# ${f.name} (${f.where})`);
  for (const l of f.message.slice(0, 12)) console.log(`#     ${cut(l, 240)}`);
}
console.log('# ---- in short ----');
for (const f of failed) console.log(`# FAILED ${cut(f.name, 120)} (${f.where}): ${cut(f.message[0] ?? '', 160)}`);
