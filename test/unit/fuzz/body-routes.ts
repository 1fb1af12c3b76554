/** The API routes that take a JSON body, found in the OpenAPI document, and each body schema compiled on its own. */
import AjvCompiler from '@fastify/ajv-compiler';
import { buildApi } from '../../../src/api/server.js';
import { recordingServices } from '../api/recording-services.js';
import type { Json } from './arbitraries.js';

export interface BodyRoute { method: string; url: string; schema: Json }

/** Every route with a JSON body; path parameters are all filled with `param`. */
export async function bodyRoutes(param = 'web1'): Promise<BodyRoute[]> {
  const app = await buildApi(recordingServices([]));
  try {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as { paths: Record<string, Record<string, Json>> };
    const out: BodyRoute[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const body = op.requestBody as { content?: Record<string, { schema?: Json }> } | undefined;
        const schema = body?.content?.['application/json']?.schema;
        if (schema) out.push({ method: method.toUpperCase(), url: path.replace(/\{[^}]+\}/g, param), schema });
      }
    }
    return out;
  } finally {
    await app.close();
  }
}

/** The oracle: the body schema compiled on its own, without coercion (JSON bodies are taken as sent). */
export function oracle(route: BodyRoute): (body: unknown) => boolean {
  const compile = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: true, allErrors: false } } as never);
  const validate = compile({ schema: route.schema, method: route.method, url: route.url, httpPart: 'body' }) as (v: unknown) => boolean;
  return (body) => validate(structuredClone(body));
}
