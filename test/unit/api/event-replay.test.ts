/**
 * /v1/events over a source whose replay is a query (a cluster controller's): live events that come while the
 * replay is read wait for it, and an event both replayed and delivered live (its notification late) is sent once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newApp } from '../../../src/api/app.js';
import { eventRoutes, type EventSource } from '../../../src/api/routes-events.js';
import type { StoredEvent } from '../../../src/store/store.js';

const ev = (id: number): StoredEvent => ({ id, time: new Date(0).toISOString(), type: 'test.ev', instance: null, data: { n: id } });

test('a replay read by a query: live events wait for it, and one it held is not sent again', async () => {
  const subs = new Set<(e: StoredEvent) => void>();
  let answer: (list: StoredEvent[]) => void = () => undefined;
  const source: EventSource = {
    since: () => new Promise((r) => { answer = r; }),
    subscribe: (fn) => { subs.add(fn); return () => subs.delete(fn); },
  };
  const app = newApp({});
  await app.register(eventRoutes({ events: source }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v1/events?since=0`);
    const reader = res.body!.getReader();
    const publish = (e: StoredEvent): void => { for (const fn of subs) fn(e); };
    publish(ev(2)); // live while the replay is read: also in the replay
    answer([ev(1), ev(2)]);
    await new Promise((r) => setImmediate(r)); // the replay's answer is taken
    publish(ev(1)); // a late notification of a replayed event
    publish(ev(3));
    publish(ev(2)); // after a new one: no longer checked (never happens: notifications come in commit order)
    let text = '';
    while ((text.match(/^id: /gm) ?? []).length < 4) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    assert.deepEqual([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1])), [1, 2, 3, 2]);
    assert.ok(text.indexOf(': connected') > text.indexOf('id: 2') && text.indexOf(': connected') < text.indexOf('id: 3'), text);
  } finally {
    await app.close();
  }
});
