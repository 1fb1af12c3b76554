/**
 * fast-check arbitraries for fuzzing: values shaped like a JSON schema (as the OpenAPI document gives it), with
 * wrong types, nulls, extreme numbers, long and unicode strings and unknown fields mixed in at every level.
 */
import fc from 'fast-check';

export type Json = Record<string, unknown>;

/** Numbers a careless parser or size computation trips on. */
const extremeNumbers = [0, -0, -1, 1, 2 ** 31, -(2 ** 31), 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e21, 1e300, -1e300, Number.MAX_VALUE];

/** Strings the services parse: sizes, names, addresses, CPU lists, paths. */
const telling = [
  '', ' ', '0', '-1', '512M', '2G', '-1G', '0G', '1.5G', '99999999999999999999G', '1e400', '9007199254740993', 'NaNG', 'Infinity', '1P', '16E', '1Z',
  'default', 'user', 'none', 'tiny', 'web1', 'a', '-a', 'a-', 'x'.repeat(64), '..', '../../etc/passwd', '/', '/dev/null', '/etc/passwd',
  '10.0.0.0/8', '0.0.0.0/0', '10.0.0.1/33', '::1/128', '0-3,6', '3-0', '0-4294967296', '0000:03:00.0', '03:00.0', 'ffff:ff:1f.7',
  'tcp:127.0.0.1:2222:22', 'udp::0:0', '65536:22', 'json:{"file":{"filename":"/etc/passwd"}}', 'nbd://x', '\u0000', '\u202e', 'é', '💥', '\ud800',
];

const longString = fc.integer({ min: 1000, max: 20_000 }).chain((n) => fc.constantFrom('a', '9', 'é', '💥', '/').map((c) => c.repeat(n)));

export const anyString: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...telling) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  { weight: 1, arbitrary: longString },
);

export const anyInteger: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -4, max: 70 }) },
  { weight: 2, arbitrary: fc.constantFrom(...extremeNumbers.filter(Number.isInteger)) },
  { weight: 1, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.maxSafeInteger() },
);

const anyNumber: fc.Arbitrary<number> = fc.oneof(anyInteger, fc.constantFrom(...extremeNumbers, 0.5, -0.5, 1e-300), fc.double({ noNaN: true, noDefaultInfinity: true }));

/** A value of the wrong kind for any place. */
export const wrong: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null), fc.boolean(), anyNumber, anyString, fc.constant([]), fc.constant({}), fc.jsonValue({ maxDepth: 3 }),
);

/** The values to put where a schema wants a string or an integer, by the name of the field (its own, or its array's). */
export interface Hints {
  string(field: string): fc.Arbitrary<string>;
  integer(field: string): fc.Arbitrary<number>;
}

const noHints: Hints = { string: () => anyString, integer: () => anyInteger };

/** A value shaped like `schema`, wrong in places. */
export function shaped(schema: Json, depth = 0, hints: Hints = noHints, field = ''): fc.Arbitrary<unknown> {
  const right = conforming(schema, depth, hints, field);
  return depth > 4 ? right : fc.oneof({ weight: 8, arbitrary: right }, { weight: 1, arbitrary: wrong });
}

function conforming(s: Json, depth: number, hints: Hints, field: string): fc.Arbitrary<unknown> {
  if (Array.isArray(s.anyOf)) return fc.oneof(...(s.anyOf as Json[]).map((a) => shaped(a, depth + 1, hints, field)));
  if (Array.isArray(s.enum)) return fc.oneof(fc.constantFrom(...(s.enum as unknown[])), hints.string(field));
  switch (s.type) {
    case 'string': return hints.string(field);
    case 'integer': return hints.integer(field);
    case 'number': return anyNumber;
    case 'boolean': return fc.boolean();
    case 'null': return fc.constant(null);
    case 'array': return fc.array(s.items ? shaped(s.items as Json, depth + 1, hints, field) : wrong, { maxLength: 12 });
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, Json>;
      const required = (s.required ?? []) as string[];
      const record = fc.record(
        Object.fromEntries(Object.entries(props).map(([k, v]) => [k, shaped(v, depth + 1, hints, k)])),
        { requiredKeys: required.filter((k) => k in props) },
      );
      const extra = fc.dictionary(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'x', ''), fc.string({ maxLength: 8 })), wrong, { maxKeys: 2 });
      return fc.oneof(
        { weight: 6, arbitrary: record },
        { weight: 1, arbitrary: fc.tuple(record, extra).map(([r, e]) => ({ ...e, ...(r as object) })) },
        { weight: 1, arbitrary: fc.record(Object.fromEntries(Object.keys(props).map((k) => [k, wrong])), { requiredKeys: [] }) },
      );
    }
    default: return wrong;
  }
}
