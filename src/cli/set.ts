/**
 * `corral set NAME KEY=VALUE...`: change a stopped instance's configuration (PATCH /v1/instances/NAME),
 * validated by the daemon as a create is; the next start uses it.
 */
import type { Command } from 'commander';
import { CliError, type ApiClient } from './client.js';
import { printJson, printLines } from './format.js';
import type { Instance } from './instances.js';
import { SetInstanceBody } from '../api/schemas-instances.js';

type Kind = 'int' | 'number' | 'bool' | 'string';
interface KeySpec { field: string; kind: Kind; clearable: boolean }

type Schema = { type?: string | string[]; anyOf?: Schema[] };

/** Every JSON type a schema allows, through its unions. */
function typesOf(schema: Schema): string[] {
  const own = schema.type === undefined ? [] : Array.isArray(schema.type) ? schema.type : [schema.type];
  return [...own, ...(schema.anyOf ?? []).flatMap(typesOf)];
}

/** How the CLI reads a value for one of the API's fields: from the JSON types its schema allows. */
function kindOf(schema: Schema): { kind: Kind; clearable: boolean } {
  const types = typesOf(schema);
  const kind: Kind = types.includes('string') || types.length === 0 ? 'string'
    : types.includes('boolean') ? 'bool' : types.includes('number') ? 'number' : 'int';
  return { kind, clearable: types.includes('null') };
}

/**
 * KEY (the API field in kebab case, as on the create command line) -> API field and how to read its value; made
 * from the API's own schema of the change (PATCH /v1/instances/NAME), so the CLI offers what the API takes.
 */
export const SET_KEYS: Record<string, KeySpec> = Object.fromEntries(
  Object.entries(SetInstanceBody.properties).map(([field, schema]) => [
    field.replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase(),
    { field, ...kindOf(schema as Schema) },
  ]),
);

/** KEY=VALUE pairs -> the PATCH body; "none" clears a clearable key. Throws CliError on a bad pair. */
export function parseAssignments(pairs: string[]): Record<string, unknown> {
  if (pairs.length === 0) throw new CliError(`say what to change: KEY=VALUE (keys: ${Object.keys(SET_KEYS).join(', ')})`);
  const body: Record<string, unknown> = {};
  for (const pair of pairs) {
    const i = pair.indexOf('=');
    const key = (i < 0 ? pair : pair.slice(0, i)).replace(/^--/, '').replace(/([a-z])([A-Z])/g, '$1-$2').toLowerCase();
    const spec = SET_KEYS[key];
    if (!spec) throw new CliError(`unknown key "${key}" (keys: ${Object.keys(SET_KEYS).join(', ')})`);
    if (i < 0) throw new CliError(`"${pair}": give a value, e.g. ${key}=...`);
    const raw = pair.slice(i + 1).trim();
    if (raw === 'none' || raw === '') {
      if (!spec.clearable) throw new CliError(`${key} cannot be cleared`);
      body[spec.field] = null;
      continue;
    }
    if (spec.kind === 'int') {
      if (!/^\d+$/.test(raw)) throw new CliError(`${key}: expected a whole number, got "${raw}"`);
      body[spec.field] = Number(raw);
    } else if (spec.kind === 'number') {
      if (!/^\d+(\.\d+)?$/.test(raw)) throw new CliError(`${key}: expected a number such as 1.5, got "${raw}"`);
      body[spec.field] = Number(raw);
    } else if (spec.kind === 'bool') {
      const v = { yes: true, true: true, on: true, no: false, false: false, off: false }[raw.toLowerCase()];
      if (v === undefined) throw new CliError(`${key}: expected yes or no, got "${raw}"`);
      body[spec.field] = v;
    } else {
      body[spec.field] = raw;
    }
  }
  return body;
}

export function registerSetCommand(program: Command, client: () => ApiClient): void {
  program
    .command('set')
    .description('change a stopped instance\'s configuration, checked as create checks it; the next start uses it')
    .argument('<name>', 'instance name')
    .argument('<key=value...>', `what to change: ${Object.keys(SET_KEYS).join(', ')} ("none" clears pin, limits, max-*, hugepages)`)
    .option('--json', 'print the API JSON')
    .action(async (name: string, pairs: string[], o: { json?: boolean }) => {
      const body = parseAssignments(pairs);
      const r = await client().call<{ instance: Instance; changed: string[] }>('PATCH', `/v1/instances/${encodeURIComponent(name)}`, body);
      if (o.json) printJson(r);
      else printLines(r.changed.length ? `${name}: changed ${r.changed.join(', ')} (applies at the next start)` : `${name}: nothing changed`);
    });
}
