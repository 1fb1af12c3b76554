/**
 * A controller's console: `corral console NAME` against a controller reaches the serial console on the host that
 * runs NAME (and the web console's graphical console, /v1/instances/NAME/vnc, its VNC websocket). The controller opens the agent's own console websocket (mutual TLS, the agent's certificate pinned, as
 * every call to an agent) before it answers the client's upgrade, so that whatever the agent refuses
 * (INSTANCE_NOT_FOUND, CONSOLE_BUSY, not running) is the client's HTTP error, as with a single daemon. Then bytes go
 * both ways, as they are, and a close on one side closes the other with its code and reason.
 *
 * Backpressure: when the client does not read, what waits for it in the controller stays under `maxBufferedBytes`:
 * reading from the agent is paused, so the agent's own websocket fills up and the agent cuts the slow client
 * (CONSOLE_TOO_SLOW), whose close is relayed. The controller never buffers a console without bound.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WebSocket, type ClientOptions, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import { CorralError } from '../core/errors.js';
import type { HostRow } from './cluster-store.js';
import { agentError, agentTlsOptions, noApi, parse, type AgentTls } from './agent-client.js';

const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface ConsoleProxyDeps {
  /** the host that runs the instance, or a coded error (INSTANCE_NOT_FOUND, HOST_UNAVAILABLE) */
  hostOf: (name: string) => Promise<HostRow>;
  tls: AgentTls;
  /** bytes waiting for a client before reading from the agent pauses */
  maxBufferedBytes?: number;
  /** how long reading may stay paused before the client is cut (CONSOLE_TOO_SLOW), and the grace it then has */
  stallMs?: number;
  cutGraceMs?: number;
}

/** The agent's console websocket, open, or the agent's refusal as its coded error. */
export function dialAgentConsole(host: HostRow, path: string, tls: AgentTls): Promise<WebSocket> {
  if (!host.address) return Promise.reject(noApi(host));
  const url = new URL(path, host.address);
  url.protocol = 'wss:';
  // ws hands these to tls.connect, whose checkServerIdentity returns an Error (ws's own type says boolean)
  const ws = new WebSocket(url, { ...agentTlsOptions(tls, host), perMessageDeflate: false, handshakeTimeout: HANDSHAKE_TIMEOUT_MS } as unknown as ClientOptions);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        req.destroy();
        reject(agentError(host, res.statusCode ?? 0, parse(Buffer.concat(chunks))));
      });
      res.on('error', () => reject(agentError(host, res.statusCode ?? 0, null)));
    });
    ws.once('error', (e) => reject(new CorralError('HOST_UNAVAILABLE', `host "${host.name}" (${host.address}) cannot be reached for the console: ${e.message}`, { host: host.name })));
  });
}

/** A close code the client may be sent: 1005 (none given) and 1006 (connection lost) are only ever observed. */
function relayedClose(code: number, reason: string, host: string): [number, string] {
  if (code === 1005) return [1000, reason];
  if (code === 1006) return [1011, `lost the connection to host "${host}"`];
  return [code, reason];
}

export function controllerConsoleRoutes(d: ConsoleProxyDeps) {
  const limit = d.maxBufferedBytes ?? 1024 * 1024;
  const stallMs = d.stallMs ?? 30_000;
  const cutGraceMs = d.cutGraceMs ?? 5000;
  // the agent's socket, opened before the client's upgrade is answered
  const dialled = new WeakMap<FastifyRequest, { ws: WebSocket; host: string }>();
  return async (app: FastifyInstance): Promise<void> => {
    // the serial console and the graphical console (VNC): both are bytes both ways, relayed as they are
    for (const path of ['/v1/instances/:name/console', '/v1/instances/:name/vnc']) app.get(path, {
      websocket: true,
      // a route's preHandler runs after the role check (onRequest, controller-auth.ts): nobody but an operator makes it dial
      preHandler: async (req) => {
        const host = await d.hostOf((req.params as { name: string }).name);
        const ws = await dialAgentConsole(host, req.url, d.tls);
        dialled.set(req, { ws, host: host.name });
        // an upgrade that does not happen after all (the client went away): the agent's console is let go
        req.raw.socket.once('close', () => ws.close(1000, 'the client went away'));
      },
    }, (client, req) => {
      const got = dialled.get(req);
      if (!got) {
        client.close(1011, 'console unavailable');
        return;
      }
      const { ws: agent, host } = got;
      let paused = false;
      // a client that stays paused this long is cut, as a single daemon cuts a client that does not read
      let stalled: NodeJS.Timeout | undefined;
      agent.on('message', (data: RawData) => {
        if (client.readyState !== client.OPEN) return;
        client.send(data as Buffer, { binary: true }, () => {
          if (paused && client.bufferedAmount < limit / 2) {
            paused = false;
            clearTimeout(stalled);
            agent.resume();
          }
        });
        if (!paused && client.bufferedAmount > limit) {
          paused = true;
          agent.pause();
          stalled = setTimeout(() => {
            client.close(4008, `CONSOLE_TOO_SLOW: the client did not read the console (${client.bufferedAmount} bytes waiting)`);
            agent.terminate();
            setTimeout(() => client.terminate(), cutGraceMs).unref();
          }, stallMs);
          stalled.unref();
        }
      });
      client.on('message', (data: RawData) => {
        if (agent.readyState === agent.OPEN) agent.send(data as Buffer, { binary: true });
      });
      agent.on('close', (code, reason) => {
        if (client.readyState === client.OPEN || client.readyState === client.CONNECTING) client.close(...relayedClose(code, reason.toString('utf8'), host));
      });
      client.on('close', () => {
        clearTimeout(stalled);
        if (agent.readyState === agent.OPEN || agent.readyState === agent.CONNECTING) agent.close(1000, 'console detached');
      });
      agent.on('error', () => agent.terminate());
      client.on('error', () => client.terminate());
    });
  };
}
