/** /v1/tokens: named API tokens (create shows the secret once; list never does), and /v1/audit: the audit log's latest entries. */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { AuditSink } from '../services/audit.js';
import type { CreatedToken as NewToken, CreateTokenRequest, TokenView } from '../services/tokens.js';
import type { Caller } from './auth.js';
import { errors, NameParams } from './schemas-common.js';
import { AuditList, AuditQuery, CreatedToken, CreateTokenBody, Token, TokenList } from './schemas-auth.js';

type Maybe<T> = T | Promise<T>;

/** What the token routes ask: the daemon's TokenService (SQLite), or a cluster controller's (PostgreSQL). */
export interface TokenApi {
  list(): Maybe<TokenView[]>;
  /** `by`: who asked (kept by a cluster, which says who made each token) */
  create(req: CreateTokenRequest, by: Caller | null): Maybe<NewToken>;
  revoke(name: string): Maybe<TokenView>;
}

const tags = ['tokens'];

export function tokenRoutes(svc: { tokens: TokenApi }): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/tokens',
      { schema: { operationId: 'listTokens', tags, summary: 'List API tokens: name, role, status, created, expires, last used (never a secret)', response: { 200: TokenList, 401: errors[401], 500: errors[500] } } },
      async () => ({ tokens: await svc.tokens.list() }),
    );
    app.post(
      '/v1/tokens',
      {
        schema: {
          operationId: 'createToken', tags, summary: 'Create an API token for the TCP API; the reply carries its secret, shown this once',
          body: CreateTokenBody, response: { 201: CreatedToken, ...errors },
        },
      },
      async (req, reply) => reply.status(201).send(await svc.tokens.create(req.body, req.caller)),
    );
    app.delete(
      '/v1/tokens/:name',
      {
        schema: {
          operationId: 'revokeToken', tags, summary: 'Revoke an API token: it is refused from now on (its holder is told it was revoked)',
          params: NameParams, response: { 200: Token, ...errors },
        },
      },
      async (req) => svc.tokens.revoke(req.params.name),
    );
  };
}

/** `audit` undefined: an API that records nothing (tests) answers an empty list. */
export function auditRoutes(audit: AuditSink | undefined): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.get(
      '/v1/audit',
      {
        schema: {
          operationId: 'listAuditEntries', tags: ['audit'], summary: 'The latest entries of the audit log: state-changing and refused requests, who made them and how they ended',
          querystring: AuditQuery, response: { 200: AuditList, 400: errors[400], 401: errors[401], 500: errors[500] },
        },
      },
      async (req) => ({ entries: (await audit?.recent(req.query.limit ?? 100)) ?? [] }),
    );
  };
}
