/** `corral events`: follow the daemon's server-sent event stream. */
import type { Command } from 'commander';
import { CliError, lines, type ApiClient } from './client.js';
import { wholeNumber } from './instances.js';

export interface SseMessage { id?: string; event?: string; data: string }

/** An incremental text/event-stream parser: feed it lines, it calls back once per complete event. */
export function sseParser(onMessage: (m: SseMessage) => void): (line: string) => void {
  let cur: { id?: string; event?: string; data: string[] } = { data: [] };
  return (line: string) => {
    if (line === '') {
      if (cur.data.length > 0) onMessage({ id: cur.id, event: cur.event, data: cur.data.join('\n') });
      cur = { data: [] };
      return;
    }
    if (line.startsWith(':')) return; // comment / keep-alive
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') cur.data.push(value);
    else if (field === 'id') cur.id = value;
    else if (field === 'event') cur.event = value;
  };
}

interface EventJson { id?: number; time?: string; type?: string; instance?: string | null; data?: unknown }

/** `TIME TYPE INSTANCE {data}`. */
export function eventLine(ev: EventJson, fallbackType = 'message'): string {
  const data = ev.data === undefined || ev.data === null ? '' : ` ${JSON.stringify(ev.data)}`;
  return `${ev.time ?? '-'} ${ev.type ?? fallbackType} ${ev.instance ?? '-'}${data}`;
}

export function registerEventCommands(program: Command, client: () => ApiClient): void {
  program
    .command('events')
    .description('follow the event stream (instance state changes, images, daemon)')
    .option('--since <id>', 'first replay the stored events after this id', wholeNumber)
    .option('--json', 'print each event as one line of JSON')
    .action(async (o: { since?: number; json?: boolean }) => {
      const path = o.since !== undefined ? `/v1/events?since=${o.since}` : '/v1/events';
      const res = await client().stream('GET', path);
      let last: string | undefined;
      let stopping = false;
      const resume = (): string => (last ? ` (resume with: corral events --since ${last})` : '');
      try {
        await lines(
          res,
          sseParser((m) => {
            if (m.id) last = m.id;
            if (m.event === 'daemon.stopping') stopping = true;
            let ev: EventJson;
            try {
              ev = JSON.parse(m.data) as EventJson;
            } catch {
              process.stdout.write(o.json ? `${JSON.stringify({ type: m.event ?? 'message', data: m.data })}\n` : `${m.event ?? 'message'} ${m.data}\n`);
              return;
            }
            process.stdout.write(`${o.json ? JSON.stringify(ev) : eventLine(ev, m.event)}\n`);
          }),
        );
      } catch (e) {
        // The connection broke. After the daemon's last word that is just its exit; otherwise say so plainly.
        if (!stopping) throw new CliError(`lost the connection to the daemon${resume()}: ${(e as Error).message}`);
      }
      // The daemon's own last event: a clean end, not an error.
      if (stopping) process.stderr.write(`the corral daemon is stopping; the event stream ended${resume()}\n`);
      else throw new CliError(`the daemon closed the event stream${resume()}`);
    });
}
