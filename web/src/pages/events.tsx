/** The event stream as it comes (the newest first), with the last events stored before the page opened. */
import { useState } from 'preact/hooks';
import { useLive } from '../live';
import { EventTable } from './overview';

export function Events() {
  const l = useLive();
  const [filter, setFilter] = useState('');
  const f = filter.trim();
  const list = l.events.filter((e) => !f || e.type.includes(f) || (e.instance ?? '').includes(f)).slice().reverse();
  return (
    <section aria-labelledby="events-title">
      <div class="titlebar">
        <h1 id="events-title">Events</h1>
        <span class="muted">{l.connected ? 'live' : 'reconnecting…'}</span>
        <input type="search" placeholder="filter by type or instance" aria-label="filter events" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
      </div>
      <EventTable events={list} />
      <p class="muted">The page keeps the latest 200 events; <code>corral events --since ID</code> replays all of them.</p>
    </section>
  );
}
