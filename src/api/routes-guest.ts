/** /v1/instances/NAME/exec: run a command in the guest through its agent (src/services/guest-agent.ts). */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { decodeBase64 } from '../core/guest-agent.js';
import { errors, NameParams } from './schemas-common.js';
import { agentErrors, ExecBody, ExecReply } from './schemas-guest.js';
import type { Services } from './services.js';

export function guestRoutes(svc: Services): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    app.post('/v1/instances/:name/exec', {
      schema: {
        operationId: 'execInstance', tags: ['instances'],
        summary: 'Run a command in a running guest through its guest agent (guest-exec) and wait for it: exit code, stdout, stderr',
        params: NameParams, body: ExecBody, response: { 200: ExecReply, ...errors, ...agentErrors },
      },
    }, async (req) => {
      const encoding = req.body.encoding ?? 'utf8';
      const stdin = req.body.stdin === undefined ? null : encoding === 'base64' ? decodeBase64('stdin', req.body.stdin) : Buffer.from(req.body.stdin, 'utf8');
      const r = await svc.guestAgent.exec(req.params.name, { command: req.body.command, stdin, ...(req.body.timeout !== undefined ? { timeout: req.body.timeout } : {}) });
      const text = (b: Buffer): string => b.toString(encoding === 'base64' ? 'base64' : 'utf8');
      return {
        exitCode: r.exitCode, signal: r.signal, stdout: text(r.stdout), stderr: text(r.stderr), encoding,
        stdoutTruncated: r.stdoutTruncated, stderrTruncated: r.stderrTruncated,
      };
    });
  };
}
