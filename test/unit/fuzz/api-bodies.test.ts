/**
 * Fuzzing of every API route that takes a JSON body (found in the OpenAPI document, so a new route is covered
 * without touching this file). The services only record that they were asked and answer a coded 409. For any body:
 * the reply is never a 5xx, an error reply is {error:{code,message}} with a known 4xx code, and a body the route's
 * schema refuses (checked here with an independent, non-coercing Ajv) never reaches a service.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { buildApi } from '../../../src/api/server.js';
import { ErrorCodes } from '../../../src/core/errors.js';
import { recordingServices } from '../api/recording-services.js';
import { shaped, wrong, type Json } from './arbitraries.js';
import { bodyRoutes, oracle } from './body-routes.js';

const SEED = 20261130;
const RUNS = 120;

const clientCodes = new Set(Object.entries(ErrorCodes).filter(([, status]) => status < 500).map(([code]) => code));

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown): void => { unhandled.push(e); };
process.on('unhandledRejection', onUnhandled);
after(() => { process.off('unhandledRejection', onUnhandled); });

/** A body as sent: a JSON value, no body at all, or raw text that may not be JSON. */
type Sent = { json: unknown } | { none: true } | { raw: string };

function sentFor(schema: Json): fc.Arbitrary<Sent> {
  return fc.oneof(
    { weight: 12, arbitrary: shaped(schema).map((json) => ({ json })) },
    { weight: 3, arbitrary: fc.jsonValue().map((json) => ({ json })) },
    { weight: 1, arbitrary: wrong.map((json) => ({ json })) },
    { weight: 1, arbitrary: fc.constant({ none: true as const }) },
    { weight: 1, arbitrary: fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('{', '{"a":', '[1,]', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '\ufeff{}', 'null')).map((raw) => ({ raw })) },
  );
}

test('every JSON body route is found in the OpenAPI document', async () => {
  const routes = await bodyRoutes();
  assert.ok(routes.length >= 20, `only ${routes.length} routes with a JSON body`);
  assert.ok(routes.some((r) => r.method === 'POST' && r.url === '/v1/instances'));
  assert.ok(routes.some((r) => r.method === 'PATCH' && r.url === '/v1/instances/web1'));
});

test('any body: never a 5xx, errors are coded, and a body the schema refuses never reaches a service', async () => {
  const calls: string[] = [];
  const app = await buildApi(recordingServices(calls));
  let accepted = 0;
  let refused = 0;
  try {
    for (const route of await bodyRoutes()) {
      const ok = oracle(route);
      await fc.assert(
        fc.asyncProperty(sentFor(route.schema), async (sent) => {
          calls.length = 0;
          const r = await app.inject({
            method: route.method as 'POST', url: route.url,
            ...('json' in sent ? { payload: JSON.stringify(sent.json), headers: { 'content-type': 'application/json' } } : {}),
            ...('raw' in sent ? { payload: sent.raw, headers: { 'content-type': 'application/json' } } : {}),
          });
          assert.ok(r.statusCode < 500, `${route.method} ${route.url}: ${r.statusCode} ${r.body.slice(0, 300)}`);
          if (r.statusCode >= 400) {
            const e = (r.json() as { error?: { code?: unknown; message?: unknown } }).error;
            assert.ok(e && typeof e.code === 'string' && clientCodes.has(e.code), `uncoded reply ${r.body.slice(0, 300)}`);
            assert.equal(typeof e.message, 'string');
            assert.equal(ErrorCodes[e.code as keyof typeof ErrorCodes], r.statusCode, `${String(e.code)} answered with ${r.statusCode}`);
          }
          const schemaOk = 'json' in sent ? ok(sent.json) : 'none' in sent ? ok(undefined) || ok(null) : false;
          if (schemaOk) accepted++;
          else refused++;
          if (!schemaOk && 'json' in sent) {
            assert.deepEqual(calls.filter((c) => !c.endsWith('.list')), [], `a refused body reached ${calls.join(', ')}: ${JSON.stringify(sent.json).slice(0, 300)}`);
            assert.equal(r.statusCode, 400);
          }
        }),
        { seed: SEED, numRuns: RUNS },
      );
    }
  } finally {
    await app.close();
  }
  assert.ok(accepted > 100 && refused > 100, `too one-sided a sample: ${accepted} accepted, ${refused} refused`);
  assert.deepEqual(unhandled, []);
});
