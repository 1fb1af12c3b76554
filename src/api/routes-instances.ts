/** /v1/instances: list, create, show, delete, lifecycle actions, console (websocket) and console log. */
import type { FastifyInstance, FastifyPluginAsync, FastifyReply } from 'fastify';
import { connect } from 'node:net';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { CorralError, isCorralError } from '../core/errors.js';
import { readConsoleLog } from '../services/console-log.js';
import type { EventBus } from '../services/events.js';
import { Deleted, errors, NameParams } from './schemas-common.js';
import { ActionBody, CreateInstanceBody, DeleteQuery, DeviceList, Instance, InstanceList, SetInstanceBody, SetReply, StopReply } from './schemas-instances.js';
import type { Services } from './services.js';
import { STREAM_LIMITS, type StreamLimits } from './stream-limits.js';

const ACTIONS = ['start', 'stop', 'restart', 'pause', 'resume', 'kill'] as const;
const ACTION_SUMMARIES: Record<(typeof ACTIONS)[number], string> = {
  start: 'Start a stopped instance',
  stop: 'Power an instance off (ACPI; after half the timeout the guest agent\'s shutdown; kill at the timeout); stoppedBy says which way, killed whether QEMU was killed',
  restart: 'Stop an instance (as stop does), then start it again: a new QEMU, so configuration changes apply',
  pause: 'Pause the virtual CPUs of an instance',
  resume: 'Resume a paused instance',
  kill: 'Kill the QEMU of an instance at once',
};
const tags = ['instances'];

/** The daemon's own share of a start, for clients and the benchmark: prepare, QEMU until QMP greets, QMP status. */
function serverTiming(reply: FastifyReply, svc: Services, name: string): void {
  const t = svc.instances.startTimings.get(name);
  if (t) void reply.header('Server-Timing', `prepare;dur=${t.beforeSpawnMs.toFixed(2)}, qemu;dur=${t.qemuLaunchMs.toFixed(2)}, qmp;dur=${t.qmpReadyMs.toFixed(2)}`);
}

type StoppedBy = 'acpi' | 'agent' | 'kill';

/**
 * How a stop (or a restart's stop) of `name` brought the guest down, read from the events it publishes while the
 * call runs: after the last move to `stopping` (ACPI), `instance.stop-agent` (the guest agent was asked) and
 * `instance.stop-timeout` (QEMU killed). Operations on one instance are serialised, so the last move to `stopping`
 * before the call returns is this call's own.
 */
function watchStop(events: EventBus, name: string): { way(): StoppedBy | null; done(): void } {
  let way: StoppedBy | null = null;
  const done = events.subscribe((ev) => {
    if (ev.instance !== name) return;
    const to = (ev.data as { to?: unknown }).to;
    if (ev.type === 'instance.state' && to === 'stopping') way = 'acpi';
    else if (ev.type === 'instance.stop-agent') way = 'agent';
    else if (ev.type === 'instance.stop-timeout') way = 'kill';
  });
  return { way: () => way, done };
}

export function instanceRoutes(svc: Services, limits: StreamLimits = STREAM_LIMITS): FastifyPluginAsync {
  return async (base: FastifyInstance) => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    /** Who holds each instance's console: a detach only frees the console if it still holds it. */
    const consoleBusy = new Map<string, object>();

    app.get(
      '/v1/instances',
      { schema: { operationId: 'listInstances', tags, summary: 'List instances', response: { 200: InstanceList, 401: errors[401], 500: errors[500] } } },
      async () => ({ instances: svc.instances.list() }),
    );

    app.post(
      '/v1/instances',
      {
        schema: {
          operationId: 'createInstance', tags, summary: 'Create an instance (and start it with start=true)',
          body: CreateInstanceBody, response: { 201: Instance, ...errors },
        },
      },
      async (req, reply) => {
        const view = await svc.instances.create(req.body);
        if (req.body.start) serverTiming(reply, svc, view.name);
        return reply.status(201).send(view);
      },
    );

    app.get(
      '/v1/instances/:name',
      { schema: { operationId: 'getInstance', tags, summary: 'Show an instance (guest: its OS and addresses, when its guest agent answers within 2 s)', params: NameParams, response: { 200: Instance, ...errors } } },
      async (req) => {
        const row = svc.instances.rowOf(req.params.name);
        const view = svc.instances.view(row);
        // what the guest's agent says (its OS, its addresses), when it answers within a short timeout
        const guest = await svc.guestAgent.info(row);
        return guest ? { ...view, guest } : view;
      },
    );

    app.patch(
      '/v1/instances/:name',
      {
        schema: {
          operationId: 'setInstance', tags,
          summary: "Change a stopped instance's configuration (validated as a create is; the next start uses it)",
          params: NameParams, body: SetInstanceBody, response: { 200: SetReply, ...errors },
        },
      },
      async (req) => svc.config.set(req.params.name, req.body),
    );

    app.delete(
      '/v1/instances/:name',
      {
        schema: {
          operationId: 'deleteInstance', tags, summary: 'Delete an instance, its disks and runtime files (force=true kills a running one)',
          params: NameParams, querystring: DeleteQuery, response: { 200: Deleted, ...errors },
        },
      },
      async (req) => {
        await svc.instances.delete(req.params.name, req.query.force ?? false, req.query.forget ?? false);
        return { deleted: req.params.name };
      },
    );

    for (const action of ACTIONS) {
      const stops = action === 'stop' || action === 'restart';
      app.post(
        `/v1/instances/:name/${action}`,
        {
          schema: {
            operationId: `${action}Instance`, tags, summary: ACTION_SUMMARIES[action],
            params: NameParams, body: ActionBody, response: { 200: stops ? StopReply : Instance, ...errors },
          },
        },
        async (req, reply) => {
          const name = req.params.name;
          const timeout = req.body?.timeout;
          const i = svc.instances;
          const watch = stops ? watchStop(svc.events, name) : null;
          try {
            const view = await (action === 'start' ? i.start(name)
              : action === 'stop' ? i.stop(name, timeout)
                : action === 'restart' ? i.restart(name, timeout)
                  : action === 'pause' ? i.pause(name)
                    : action === 'resume' ? i.resume(name)
                      : i.kill(name));
            if (action === 'start' || action === 'restart') serverTiming(reply, svc, name);
            return watch ? { ...view, killed: watch.way() === 'kill', stoppedBy: watch.way() } : view;
          } finally {
            watch?.done();
          }
        },
      );
    }

    app.get(
      '/v1/instances/:name/devices',
      {
        schema: {
          operationId: 'listInstanceDevices', tags,
          summary: 'Disks, NICs and other devices with their approach (emulated, paravirtual, vhost-*, passthrough) and data path',
          params: NameParams, response: { 200: DeviceList, ...errors },
        },
      },
      async (req) => ({ devices: await svc.instances.devices(req.params.name) }),
    );

    app.get(
      '/v1/instances/:name/console/log',
      {
        schema: {
          operationId: 'getInstanceConsoleLog', tags: ['console'], summary: 'What the guest has written to its serial console so far',
          params: NameParams,
          response: {
            200: { description: 'the bytes of the console log', content: { 'application/octet-stream': { schema: Type.Unsafe<Buffer>({ type: 'string', format: 'binary' }) } } },
            ...errors,
          },
        },
      },
      async (req, reply) => {
        const file = svc.instances.consoleLogPath(req.params.name);
        return reply.type('application/octet-stream').send(readConsoleLog(file));
      },
    );

    // Interactive serial console: bytes in both directions over a websocket. One client at a time.
    app.get(
      '/v1/instances/:name/console',
      {
        websocket: true,
        schema: {
          // @fastify/websocket leaves websocket routes out of the OpenAPI document
          operationId: 'attachInstanceConsole', tags: ['console'], summary: 'Attach to the serial console (websocket, binary frames)',
          params: NameParams,
        },
        preValidation: async (req) => {
          svc.instances.consoleSocket((req.params as { name: string }).name);
          if (consoleBusy.has((req.params as { name: string }).name)) {
            throw new CorralError('CONSOLE_BUSY', `the console of "${(req.params as { name: string }).name}" is attached elsewhere`);
          }
        },
      },
      (socket, req) => {
        const name = req.params.name;
        let path: string;
        try {
          path = svc.instances.consoleSocket(name);
        } catch (e) {
          socket.close(1011, isCorralError(e) ? e.message.slice(0, 120) : 'console unavailable');
          return;
        }
        if (consoleBusy.has(name)) {
          // Two attaches raced past the check before the upgrade: the later one loses.
          socket.close(4409, 'CONSOLE_BUSY: the console is attached elsewhere');
          return;
        }
        const holder = {};
        consoleBusy.set(name, holder);
        const conn = connect(path);
        let ended = false;
        const end = (code = 1000, reason = 'console closed'): void => {
          if (ended) return;
          ended = true;
          if (consoleBusy.get(name) === holder) consoleBusy.delete(name);
          conn.end(); // flush what the user typed last (e.g. "poweroff\n") before letting go
          if (socket.readyState === socket.OPEN) socket.close(code, reason);
        };
        conn.on('data', (d) => {
          if (ended) return;
          socket.send(d, { binary: true });
          // A viewer that does not read is cut rather than buffered without end (or let stall the guest's serial port).
          if (socket.bufferedAmount > limits.maxBufferedBytes) {
            const waiting = socket.bufferedAmount;
            end(4008, `CONSOLE_TOO_SLOW: the client did not read the console (${waiting} bytes waiting)`);
            setTimeout(() => socket.terminate(), limits.cutGraceMs).unref();
          }
        });
        conn.on('error', () => {
          conn.destroy();
          end();
        });
        conn.on('close', () => end());
        socket.on('message', (d: Buffer | ArrayBuffer | Buffer[]) => {
          conn.write(Array.isArray(d) ? Buffer.concat(d) : Buffer.from(d as ArrayBuffer));
        });
        socket.on('close', () => end());
        socket.on('error', () => end());
      },
    );
  };
}
