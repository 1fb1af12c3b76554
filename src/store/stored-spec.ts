/**
 * A stored instance spec read back: parsed, given the defaults of fields added since it was written
 * (normalizeSpec), then checked against the spec schema. A corrupt or foreign record is CORRUPT_RECORD naming the
 * instance and the first field that is wrong, instead of a crash deep in whatever code reads the spec next.
 */
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { CorralError } from '../core/errors.js';
import { normalizeSpec } from '../core/spec.js';
import { InstanceSpecSchema, type InstanceSpec } from '../core/spec-schema.js';

const checker = TypeCompiler.Compile(InstanceSpecSchema);

function corrupt(name: string, why: string, field: string): CorralError {
  return new CorralError('CORRUPT_RECORD', `instance "${name}": its stored spec is not valid (${why}); the record is corrupt or from another version of Corral`, { name, field });
}

/** `known`: this very text was found valid before (the store remembers), so it is parsed but not checked again. */
export function readStoredSpec(name: string, text: string, mac: string, known = false): InstanceSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw corrupt(name, `not JSON: ${(e as Error).message}`, '');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw corrupt(name, 'not an object', '');
  const spec = normalizeSpec(raw as Parameters<typeof normalizeSpec>[0], mac);
  if (known || checker.Check(spec)) return spec;
  const first = checker.Errors(spec).First();
  const field = (first?.path ?? '').replace(/^\//, '').replace(/\//g, '.');
  throw corrupt(name, first ? `${field || 'spec'}: ${first.message}` : 'it does not match the spec schema', field);
}
