/**
 * Every instance, kept live by the event stream (src/live.ts): name, its host (on a cluster controller), state, size, image, accelerator, uptime and
 * the actions its state allows. Only the rows in view are in the page, so a thousand cost what thirty do.
 */
import { useState } from 'preact/hooks';
import { Actions } from '../components/actions';
import { VirtualList } from '../components/virtual-list';
import { duration, size } from '../format';
import { useLive } from '../live';
import { href } from '../router';
import type { ListedInstance } from '../types';

const ROW = 40;

export function Instances() {
  const l = useLive();
  const [filter, setFilter] = useState('');
  const all: ListedInstance[] = [...l.instances.values()];
  // a controller's list says which host each instance is on: a HOST column then
  const hosted = all.some((i) => i.host !== undefined);
  // sorting a thousand names is well under a millisecond: no need to keep it between renders
  const f = filter.trim().toLowerCase();
  const shown = (f ? all.filter((i) => i.name.includes(f) || i.state.includes(f) || i.image.toLowerCase().includes(f) || (i.host ?? '').includes(f)) : all)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return (
    <section class="fill" aria-labelledby="instances-title">
      <div class="titlebar">
        <h1 id="instances-title">Instances</h1>
        <span class="muted">{shown.length === all.length ? `${all.length}` : `${shown.length} of ${all.length}`}{l.connected ? ' · live' : ' · reconnecting…'}</span>
        <input type="search" placeholder={hosted ? 'filter by name, host, state, image' : 'filter by name, state, image'} aria-label="filter instances" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        <a class="button" href={href.create}>Create instance</a>
      </div>
      {!l.loaded && <p aria-busy="true">Loading…</p>}
      {l.error && <p class="error">{l.error}</p>}
      <div class="itable" role="table" aria-label="instances" aria-rowcount={shown.length + 1}>
        <div class={hosted ? 'irow hosted head' : 'irow head'} role="row">
          <span role="columnheader">name</span>{hosted && <span role="columnheader">host</span>}<span role="columnheader">state</span><span role="columnheader">vCPUs</span>
          <span role="columnheader">memory</span><span role="columnheader">image</span><span role="columnheader">accel</span>
          <span role="columnheader">uptime</span><span role="columnheader">actions</span>
        </div>
        <VirtualList items={shown} rowHeight={ROW} label="instance rows" row={(i) => <Row inst={i} hosted={hosted} />} />
      </div>
    </section>
  );
}

function Row({ inst, hosted }: { inst: ListedInstance; hosted: boolean }) {
  return (
    <div class={hosted ? 'irow hosted' : 'irow'} data-instance={inst.name}>
      <span role="cell"><a href={href.instance(inst.name)}>{inst.name}</a></span>
      {hosted && <span role="cell" class="host-cell">{inst.host ?? '-'}</span>}
      <span role="cell"><span class={`state ${inst.state}`}>{inst.state}</span></span>
      <span role="cell">{inst.cpus}</span>
      <span role="cell">{size(inst.memory)}</span>
      <span role="cell">{inst.image}</span>
      <span role="cell">{inst.accel ?? '-'}</span>
      <span role="cell">{duration(inst.uptime)}</span>
      <span role="cell"><Actions inst={inst} /></span>
    </div>
  );
}
