/**
 * The import rules of src/, read from the source: no import cycles; src/core imports nothing outside
 * src/core; src/cli never imports src/services, src/network or src/host; src/api never imports src/host.
 * Every import counts, `import type` and `export ... from` included. Each test reports all its violations.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The repository root in the source tree (tests run from dist/test/unit). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SRC = join(ROOT, 'src');

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...tsFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/**
 * The module specifiers of one file as TypeScript's own pre-processor reads them: `import ... from`,
 * `import type`, `import '...'`, `export ... from` and `import('...')`, never text in comments or strings.
 */
export function importSpecifiers(text: string): string[] {
  return ts.preProcessFile(text, true, false).importedFiles.map((f) => f.fileName);
}

/** src-relative path (e.g. core/spec.ts) -> the src-relative paths it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of tsFiles(SRC)) {
    const from = relative(SRC, file);
    const deps = importSpecifiers(readFileSync(file, 'utf8'))
      .filter((s) => s.startsWith('.'))
      .map((s) => relative(SRC, resolve(dirname(file), s.replace(/\.js$/, '.ts'))));
    graph.set(from, [...new Set(deps)]);
  }
  return graph;
}

/** Every group of files that import each other in a circle (a strongly connected component), with one concrete cycle through it. */
function cycles(graph: Map<string, string[]>): Array<{ cycle: string[]; files: string[] }> {
  // Tarjan's strongly connected components; a component of more than one file (or a file importing itself) holds a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const comps: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (graph.get(v) ?? []).includes(v)) comps.push(comp);
    }
  };
  for (const v of [...graph.keys()].sort()) if (!idx.has(v)) visit(v);
  return comps.map((comp) => ({ cycle: cycleThrough(graph, comp), files: comp }));
}

/** A shortest cycle from the component's first file back to itself. */
function cycleThrough(graph: Map<string, string[]>, comp: string[]): string[] {
  const inComp = new Set(comp);
  const start = [...comp].sort()[0]!;
  const prev = new Map<string, string>();
  const queue = [start];
  const seen = new Set([start]);
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (w === start) {
        const path = [v];
        while (path[0] !== start) path.unshift(prev.get(path[0]!)!);
        return [...path, start];
      }
      if (inComp.has(w) && !seen.has(w)) {
        seen.add(w);
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

const graph = importGraph();
const edges = [...graph].flatMap(([from, deps]) => deps.map((to) => ({ from, to })));
const under = (p: string, dir: string): boolean => p.startsWith(`${dir}/`);
const show = (bad: Array<{ from: string; to: string }>): string => bad.map((e) => `  src/${e.from} -> src/${e.to}`).join('\n');

test('the import graph is read: src/ has files and imports', () => {
  assert.ok(graph.size > 50, `only ${graph.size} files found under ${SRC}`);
  assert.ok(edges.some((e) => e.from === 'daemon/main.ts' && under(e.to, 'services')), 'daemon/main.ts imports no service: the parser misses imports');
  assert.deepEqual(importSpecifiers("import type { A } from './a.js';\nexport { b } from \"./b.js\";\nexport * from './c.js';\nimport {\n  d,\n} from './d.js';\n// import x from './no.js'\nimport './e.js';\nconst s = \"from './no.js'\";"),
    ['./a.js', './b.js', './c.js', './d.js', './e.js']);
});

test('the cycle finder finds a circle, and only that', () => {
  const g = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts', 'd.ts']], ['c.ts', ['a.ts']], ['d.ts', []], ['e.ts', ['a.ts']]]);
  assert.deepEqual(cycles(g), [{ cycle: ['a.ts', 'b.ts', 'c.ts', 'a.ts'], files: ['c.ts', 'b.ts', 'a.ts'] }]);
  assert.deepEqual(cycles(new Map([['a.ts', ['b.ts']], ['b.ts', []]])), []);
});

test('src/ has no import cycles', () => {
  const found = cycles(graph);
  const line = ({ cycle, files }: { cycle: string[]; files: string[] }): string =>
    `  ${cycle.map((f) => `src/${f}`).join(' -> ')}${files.length > cycle.length - 1 ? ` (one circle of ${files.length} files: ${files.sort().join(', ')})` : ''}`;
  assert.equal(found.length, 0, `import cycles in src/:\n${found.map(line).join('\n')}`);
});

test('src/core imports nothing outside src/core', () => {
  const bad = edges.filter((e) => under(e.from, 'core') && !under(e.to, 'core'));
  assert.equal(bad.length, 0, `src/core imports outside itself:\n${show(bad)}`);
});

test('src/cli does not import src/services, src/network or src/host', () => {
  const bad = edges.filter((e) => under(e.from, 'cli') && ['services', 'network', 'host'].some((d) => under(e.to, d)));
  assert.equal(bad.length, 0, `src/cli imports below the API:\n${show(bad)}`);
});

test('src/api does not import src/host', () => {
  const bad = edges.filter((e) => under(e.from, 'api') && under(e.to, 'host'));
  assert.equal(bad.length, 0, `src/api imports src/host:\n${show(bad)}`);
});
