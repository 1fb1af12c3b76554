/**
 * Host labels: key=value pairs a cluster's hosts carry (`corral agent --label`, `corral host label`) and a create
 * may ask for (`corral create --host-label`). Pure. What is allowed (as Kubernetes allows, a little narrower):
 * - a key: 1..63 of a-z, 0-9, '.', '_', '/' and '-', starting and ending with a letter or a digit (zone,
 *   disk.type, example.com/gpu);
 * - a value: 1..63 of A-Z, a-z, 0-9, '.', '_' and '-' (an empty value is refused: `KEY-` removes a label);
 * - at most MAX_LABELS labels on a host, or in a request.
 * A bad one is INVALID_SPEC naming the field (`labels`, `hostLabels`) and the key.
 */
import { CorralError } from './errors.js';
import { printable } from './names.js';

export const MAX_LABELS = 64;
const KEY_RE = /^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$/;
const VALUE_RE = /^[A-Za-z0-9._-]{1,63}$/;

export type Labels = Record<string, string>;
/** A change to a host's labels: a value sets the label, null removes it. */
export type LabelChanges = Record<string, string | null>;

function bad(field: string, message: string, key?: string): CorralError {
  return new CorralError('INVALID_SPEC', `${field}: ${message}`, { field, ...(key !== undefined ? { key } : {}) });
}

export function validateLabelKey(field: string, key: string): string {
  if (!KEY_RE.test(key)) {
    throw bad(field, `"${printable(key)}" is not a label key: use 1 to 63 of a-z, 0-9, '.', '_', '/' and '-', starting and ending with a letter or digit`, key);
  }
  return key;
}

export function validateLabelValue(field: string, key: string, value: unknown): string {
  if (typeof value !== 'string' || !VALUE_RE.test(value)) {
    const shown = typeof value === 'string' ? `"${printable(value)}"` : JSON.stringify(value) ?? String(value);
    throw bad(field, `the value ${shown} of label ${key} is not a label value: use 1 to 63 of A-Z, a-z, 0-9, '.', '_' and '-'`, key);
  }
  return value;
}

function objectOf(field: string, v: unknown, what: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad(field, `must be an object of ${what}`);
  const o = v as Record<string, unknown>;
  if (Object.keys(o).length > MAX_LABELS) throw bad(field, `${Object.keys(o).length} labels; at most ${MAX_LABELS} are allowed`);
  return o;
}

/** Labels as JSON carries them (`{"zone": "a"}`), checked. */
export function validateLabels(field: string, v: unknown): Labels {
  const out: Labels = {};
  for (const [k, value] of Object.entries(objectOf(field, v, 'label keys to values'))) out[validateLabelKey(field, k)] = validateLabelValue(field, k, value);
  return out;
}

/** A change as PATCH /v1/hosts/NAME takes it (`{"zone": "b", "gone": null}`), checked. */
export function validateLabelChanges(field: string, v: unknown): LabelChanges {
  const out: LabelChanges = {};
  for (const [k, value] of Object.entries(objectOf(field, v, 'label keys to values (null removes one)'))) {
    out[validateLabelKey(field, k)] = value === null ? null : validateLabelValue(field, k, value);
  }
  return out;
}

/**
 * `KEY=VALUE` arguments of the command line (--label, --host-label) as labels; each is split at its first '=' only,
 * and a key given twice is refused. What a key and a value may be is checked where they are used (the controller).
 */
export function parseLabelArgs(field: string, args: readonly string[]): Labels {
  return Object.fromEntries(splitArgs(field, args, false)) as Labels;
}

/** `corral host label`'s arguments: `KEY=VALUE` sets a label, `KEY-` removes it (as kubectl label does). */
export function parseLabelChangeArgs(field: string, args: readonly string[]): LabelChanges {
  return Object.fromEntries(splitArgs(field, args, true));
}

// a Map, then Object.fromEntries: any key (even "__proto__") becomes a key of the object, for the controller to judge
function splitArgs(field: string, args: readonly string[], removals: boolean): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const a of args) {
    const i = a.indexOf('=');
    const remove = removals && i < 0 && a.endsWith('-');
    if (i < 0 && !remove) throw bad(field, `"${printable(a)}" is ${removals ? 'neither KEY=VALUE (set a label) nor KEY- (remove one)' : 'not KEY=VALUE'}`);
    const key = remove ? a.slice(0, -1) : a.slice(0, i);
    if (out.has(key)) throw bad(field, `label ${key} is given twice`, key);
    out.set(key, remove ? null : a.slice(i + 1));
  }
  return out;
}

/** `k=v,k2=v2`, by key; `-` for none. */
export function formatLabels(labels: Labels | null | undefined): string {
  const keys = Object.keys(labels ?? {}).sort();
  return keys.length === 0 ? '-' : keys.map((k) => `${k}=${labels![k]}`).join(',');
}
