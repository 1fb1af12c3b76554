/**
 * What every Corral HTTP app shares (the daemon's API on each listener, a cluster controller's): Fastify with
 * strict JSON bodies, and errors always as {"error":{"code","message",...}} with the code's status.
 */
import Fastify, { type FastifyError, type FastifyHttpsOptions, type FastifyInstance, type FastifyRequest } from 'fastify';
import AjvCompiler, { type BuildCompilerFromPool } from '@fastify/ajv-compiler';
import type { Server } from 'node:https';
import { createRequire } from 'node:module';
import { CorralError, isCorralError, noSpace } from '../core/errors.js';

/** Turn a Fastify validation error into INVALID_SPEC naming the field. */
function validationError(err: FastifyError): CorralError {
  const v = err.validation?.[0];
  const params = (v?.params ?? {}) as Record<string, unknown>;
  let field = (v?.instancePath ?? '').replace(/^\//, '').replace(/\//g, '.');
  if (typeof params.additionalProperty === 'string') field = field ? `${field}.${params.additionalProperty}` : params.additionalProperty;
  if (typeof params.missingProperty === 'string') field = field ? `${field}.${params.missingProperty}` : params.missingProperty;
  const what = typeof params.additionalProperty === 'string' ? 'unknown field' : (v?.message ?? err.message);
  return new CorralError('INVALID_SPEC', `${field || err.validationContext || 'request'}: ${what}`, { field });
}

const ajvCompilers: BuildCompilerFromPool = AjvCompiler();

/**
 * JSON bodies are validated as sent: `{"cpus": "2"}` is not a number of CPUs. Only the query string and path
 * parameters, which are text by nature (`?force=true`), are coerced to the types their schemas name.
 */
const strictBodies: BuildCompilerFromPool = (external, options) => {
  const coercing = ajvCompilers(external, options);
  const custom = (options as { customOptions?: Record<string, unknown> } | undefined)?.customOptions ?? {};
  const strict = ajvCompilers(external, { ...options, customOptions: { ...custom, coerceTypes: false } } as Parameters<BuildCompilerFromPool>[1]);
  return (def) => (def.httpPart === 'body' ? strict(def) : coercing(def));
};

type SerializerFactory = (externalSchemas?: unknown, options?: unknown) => (route: { schema?: unknown }) => (doc: unknown) => string;

/** Fastify's own default serializer factory (fast-json-stringify), resolved as Fastify itself resolves it. */
const fastifySerializers: SerializerFactory = (() => {
  const req = createRequire(import.meta.url);
  const fromFastify = createRequire(req.resolve('fastify'));
  return (fromFastify('@fastify/fast-json-stringify-compiler') as { SerializerSelector: () => SerializerFactory }).SerializerSelector();
})();

const compiledSerializers = new WeakMap<object, (doc: unknown) => string>();

/**
 * Response serializers shared by every app of the process: fast-json-stringify compiles one function per route and
 * status, a few MiB per app, and a process builds several apps over the same schema objects (the daemon's unix and
 * TCP listeners; a simulated agent's hundreds of hosts, src/daemon/simulate.ts). A serializer depends only on its
 * schema when no shared schemas or serializer options are given (Corral gives none): with any, each app compiles
 * its own, as Fastify does.
 */
const sharedSerializers: SerializerFactory = (external, options) => {
  const own = fastifySerializers(external, options);
  const some = (o: unknown): boolean => typeof o === 'object' && o !== null && Object.keys(o).length > 0;
  if (some(external) || some(options)) return own;
  return (route) => {
    const schema = route.schema;
    if (typeof schema !== 'object' || schema === null) return own(route);
    let s = compiledSerializers.get(schema);
    if (!s) {
      s = own(route);
      compiledSerializers.set(schema, s);
    }
    return s;
  };
};

/** A Fastify app with Corral's validation (strict bodies, coerced query strings) and a 1 MiB body limit. */
export function newApp(o: { https?: FastifyHttpsOptions<Server>['https']; logger?: boolean | object }): FastifyInstance {
  return Fastify({
    ...(o.https ? { https: o.https } : {}),
    logger: o.logger ?? false,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    schemaController: { compilersFactory: { buildValidator: strictBodies, buildSerializer: sharedSerializers as never } },
    bodyLimit: 1024 * 1024,
  }) as unknown as FastifyInstance;
}

/** The API's close: every console websocket is told the daemon is stopping (1001) and cut a second later. */
export function closeWebsockets(this: FastifyInstance, done: (err?: Error) => void): void {
  for (const client of this.websocketServer.clients) {
    client.close(1001, 'the corral daemon is stopping');
    setTimeout(() => client.terminate(), 1000).unref();
  }
  this.websocketServer.close(() => undefined);
  done();
}

/** Every error as {"error":{...}} with its code's status; an unknown route is NOT_FOUND. `failed` sees each failure's code. */
export function installErrorReplies(app: FastifyInstance, failed: (req: FastifyRequest, code: string) => void = () => undefined): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    let e: CorralError;
    const full = noSpace(err, `${req.method} ${req.url.split('?')[0]}`);
    if (isCorralError(err)) e = err;
    else if (err.validation) e = validationError(err);
    else if (err.statusCode && err.statusCode < 500) e = new CorralError('INVALID_SPEC', err.message, { field: '' });
    else if (full) e = full;
    else {
      app.log.error(err);
      e = new CorralError('INTERNAL', err.message);
    }
    failed(req, e.code);
    void reply.status(e.status).send(e.toJSON());
  });
  app.setNotFoundHandler((req, reply) => {
    failed(req, 'NOT_FOUND');
    void reply.status(404).send(new CorralError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`).toJSON());
  });
}
