/**
 * The graphical console: `GET /v1/instances/NAME/vnc` is a websocket (binary frames) bridged to QEMU's VNC server
 * on the instance's unix socket (run/UUID/vnc.sock; QEMU never listens on TCP for it). Behind the API's own
 * authentication and roles (operator, as the serial console: keys and the mouse go to the guest); the web console's
 * noVNC speaks RFB through it. An instance without a display is NO_DISPLAY (409), refused before the upgrade.
 *
 * Limits: at most `maxVncClients` websockets per instance (TOO_MANY_CLIENTS 429; QEMU shares its screen between
 * them). Backpressure: once more than `maxBufferedBytes` wait for a client, reading from QEMU's socket pauses, so
 * QEMU holds its screen updates back (it throttles a VNC client whose output it cannot write); a client that stays
 * that slow for `vncStallMs` is cut (close code 4008). What a client sends waits while QEMU's socket is full.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { connect } from 'node:net';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { CorralError, isCorralError } from '../core/errors.js';
import { NameParams } from './schemas-common.js';
import type { Services } from './services.js';
import { STREAM_LIMITS, type StreamLimits } from './stream-limits.js';

export function vncRoutes(svc: Pick<Services, 'instances'>, limits: StreamLimits = STREAM_LIMITS): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    /** open graphical console websockets, by instance name */
    const open = new Map<string, number>();
    const full = (name: string): CorralError | null => {
      const n = open.get(name) ?? 0;
      return n >= limits.maxVncClients
        ? new CorralError('TOO_MANY_CLIENTS', `the graphical console of "${name}" has ${n} viewers, the most it takes; close one or try again later`, { limit: limits.maxVncClients })
        : null;
    };

    app.get(
      '/v1/instances/:name/vnc',
      {
        websocket: true,
        schema: {
          // @fastify/websocket leaves websocket routes out of the OpenAPI document
          operationId: 'attachInstanceVnc', tags: ['console'], summary: 'Attach to the graphical console: QEMU\'s VNC server (websocket, binary frames of RFB)',
          params: NameParams,
        },
        preValidation: async (req) => {
          const name = (req.params as { name: string }).name;
          svc.instances.vncSocket(name);
          const refused = full(name);
          if (refused) throw refused;
        },
      },
      (socket, req) => {
        const name = req.params.name;
        let path: string;
        try {
          path = svc.instances.vncSocket(name);
        } catch (e) {
          socket.close(1011, isCorralError(e) ? e.message.slice(0, 120) : 'graphical console unavailable');
          return;
        }
        const refused = full(name);
        if (refused) {
          // several upgrades raced past the check: the later ones lose
          socket.close(4429, `TOO_MANY_CLIENTS: ${refused.message}`.slice(0, 120));
          return;
        }
        open.set(name, (open.get(name) ?? 0) + 1);
        const conn = connect(path);
        let ended = false;
        let paused = false;
        let stalled: NodeJS.Timeout | undefined;
        const end = (code = 1000, reason = 'graphical console closed'): void => {
          if (ended) return;
          ended = true;
          clearTimeout(stalled);
          const left = (open.get(name) ?? 1) - 1;
          if (left > 0) open.set(name, left);
          else open.delete(name);
          conn.destroy();
          if (socket.readyState === socket.OPEN) socket.close(code, reason);
        };
        conn.on('data', (d) => {
          if (ended) return;
          socket.send(d, { binary: true }, () => {
            if (paused && !ended && socket.bufferedAmount < limits.maxBufferedBytes / 2) {
              paused = false;
              clearTimeout(stalled);
              conn.resume();
            }
          });
          if (!paused && socket.bufferedAmount > limits.maxBufferedBytes) {
            paused = true;
            conn.pause();
            stalled = setTimeout(() => {
              end(4008, `VNC_TOO_SLOW: the client did not read the screen (${socket.bufferedAmount} bytes waiting)`);
              setTimeout(() => socket.terminate(), limits.cutGraceMs).unref();
            }, limits.vncStallMs);
            stalled.unref();
          }
        });
        conn.on('drain', () => socket.resume());
        conn.on('error', () => end(1011, 'the graphical console\'s socket failed'));
        conn.on('close', () => end());
        socket.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => {
          if (ended) return;
          if (!conn.write(Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer))) socket.pause();
        });
        socket.on('close', () => end());
        socket.on('error', () => end());
      },
    );
  };
}
