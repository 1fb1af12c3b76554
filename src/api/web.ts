/**
 * The web console's files, served on the TCP listener: `/` is the page (web/index.html as Vite built it into
 * dist/web), `/assets/*` its scripts and styles (@fastify/static; file names carry a hash of their content, so they
 * are cached for good). Anyone may fetch them: the page asks for a token and logs in (src/api/sessions.ts) before it
 * calls the API. Everything is in the build: the page loads nothing from elsewhere (its CSP says so).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import fastifyStatic from '@fastify/static';
import { CorralError } from '../core/errors.js';

/** Where `make build` puts the built console: dist/web, next to dist/src (this file is dist/src/api/web.js). */
export const WEB_ROOT = fileURLToPath(new URL('../../web/', import.meta.url));

/**
 * Every UI reply: no framing by other sites (clickjacking), no type sniffing, no referrer, and a CSP that lets the
 * page load only its own files and talk only to its own origin (the API, the event stream, the console websocket;
 * 'self' covers wss: to the same host). Styles may be inline: xterm.js writes its own.
 */
export const UI_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function webRoutes(root = WEB_ROOT): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.addHook('onSend', async (_req, reply, payload) => {
      for (const [k, v] of Object.entries(UI_HEADERS)) void reply.header(k, v);
      return payload;
    });
    app.get('/', { schema: { hide: true } }, async (_req, reply) => {
      const index = join(root, 'index.html');
      if (!existsSync(index)) throw new CorralError('NOT_FOUND', `the web console is not built (no ${index}): run make build`);
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(readFileSync(index));
    });
    await app.register(fastifyStatic, {
      root: join(root, 'assets'),
      prefix: '/assets/',
      decorateReply: false,
      index: false,
      immutable: true,
      maxAge: '365d',
      dotfiles: 'deny',
    });
  };
}
