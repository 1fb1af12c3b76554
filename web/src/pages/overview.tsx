/**
 * On a cluster controller (its pool names its hosts): the cluster's capacity, allocation and free resources, and
 * each host's in a table (state, vCPUs and memory allocated of its capacity, instances); a controller has no
 * /v1/host nor /v1/history (those are each host's), so their parts are left out.
 * On a daemon, the host at a glance: the pool's capacity, what instances hold of it and what is free, per resource, with the
 * overcommit (what is allocated against the host's real CPUs and memory); the memory reclaimed from running guests;
 * instances by state; the latest events.
 */
import { Fragment } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api';
import { Reclaimed } from '../components/reclaimed';
import { percent, size, time } from '../format';
import { useLive } from '../live';
import { href } from '../router';
import { isClusterPool, type AnyPool, type ClusterPool, type Host } from '../types';

function Meter({ label, used, total, text }: { label: string; used: number; total: number; text: string }) {
  const p = percent(used, total);
  return (
    <div class="meter">
      <div class="meter-label"><span>{label}</span><span>{text}</span></div>
      <div class="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={total} aria-valuenow={used}>
        <div class={p > 90 ? 'fill hot' : 'fill'} style={{ width: `${Math.min(100, p)}%` }} />
      </div>
    </div>
  );
}

export function Overview() {
  const l = useLive();
  const [any, setPool] = useState<AnyPool | null>(null);
  const [host, setHost] = useState<Host | null>(null);
  const changes = l.stamp('instance') + l.stamp('cpus') + l.stamp('memory');
  useEffect(() => {
    get<AnyPool>('/v1/pool').then(setPool, () => undefined);
  }, [changes]);
  const cluster = any && isClusterPool(any) ? any : null;
  const pool = any && !isClusterPool(any) ? any : null;
  const daemon = pool !== null;
  useEffect(() => {
    if (daemon) get<Host>('/v1/host').then(setHost, () => undefined);
  }, [daemon]);
  const states = new Map<string, number>();
  for (const i of l.instances.values()) states.set(i.state, (states.get(i.state) ?? 0) + 1);
  const recent = l.events.slice(-12).reverse();
  return (
    <section aria-labelledby="overview-title">
      <h1 id="overview-title">Overview</h1>
      {cluster && <ClusterCards pool={cluster} />}
      <div class="cards">
        {!cluster && <>
        <div class="card">
          <h2>vCPUs</h2>
          {pool ? (
            <>
              <Meter label="allocated of capacity" used={pool.allocated.cpus} total={pool.capacity.cpus} text={`${pool.allocated.cpus} / ${pool.capacity.cpus}`} />
              <dl>
                <dt>free</dt><dd>{pool.free.cpus}</dd>
                <dt>ratio</dt><dd>{pool.ratios.cpu} vCPUs per host CPU</dd>
                {host && <><dt>overcommit</dt><dd>{(pool.allocated.cpus / host.cpus).toFixed(2)} vCPUs per host CPU ({host.cpus} host CPUs)</dd></>}
              </dl>
            </>
          ) : <p>…</p>}
        </div>
        <div class="card">
          <h2>Memory</h2>
          {pool ? (
            <>
              <Meter label="allocated of capacity" used={pool.allocated.memory} total={pool.capacity.memory} text={`${size(pool.allocated.memory)} / ${size(pool.capacity.memory)}`} />
              <dl>
                <dt>free</dt><dd>{size(pool.free.memory)}</dd>
                <dt>ratio</dt><dd>{pool.ratios.memory}</dd>
                <dt>reserved for the host</dt><dd>{size(pool.reservedMemory)}</dd>
                {host && <><dt>overcommit</dt><dd>{percent(pool.allocated.memory, host.memory.total)}% of the host's {size(host.memory.total)}</dd></>}
              </dl>
            </>
          ) : <p>…</p>}
        </div>
        {pool && <Reclaimed />}
        </>}
        <div class="card">
          <h2>Instances</h2>
          <p class="big">{l.instances.size}</p>
          <dl>{[...states].sort().map(([s, n]) => <Fragment key={s}><dt>{s}</dt><dd>{n}</dd></Fragment>)}</dl>
          <p><a href={href.instances}>All instances</a> · <a href={href.create}>Create one</a></p>
        </div>
      </div>
      <h2>Recent events</h2>
      <EventTable events={recent} />
      <p><a href={href.events}>All events</a></p>
    </section>
  );
}

/** A controller's pool: the cluster's sums, then each host's capacity and allocation. */
function ClusterCards({ pool }: { pool: ClusterPool }) {
  const hosts = [...pool.hosts].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return (
    <>
      <div class="cards">
        <div class="card">
          <h2>vCPUs</h2>
          <Meter label="allocated of the cluster's capacity" used={pool.allocated.cpus} total={pool.capacity.cpus} text={`${pool.allocated.cpus} / ${pool.capacity.cpus}`} />
          <dl><dt>free</dt><dd>{pool.free.cpus}</dd></dl>
        </div>
        <div class="card">
          <h2>Memory</h2>
          <Meter label="allocated of the cluster's capacity" used={pool.allocated.memory} total={pool.capacity.memory} text={`${size(pool.allocated.memory)} / ${size(pool.capacity.memory)}`} />
          <dl><dt>free</dt><dd>{size(pool.free.memory)}</dd></dl>
        </div>
      </div>
      <p class="help">Capacity and free: the hosts that are up; allocated: every host.</p>
      <h2>Hosts</h2>
      <table class="grid hosts" aria-label="hosts">
        <thead><tr><th>host</th><th>state</th><th>vCPUs allocated</th><th>memory allocated</th><th>instances</th></tr></thead>
        <tbody>
          {hosts.map((h) => (
            <tr key={h.name} data-host={h.name}>
              <td>{h.name}</td>
              <td><span class={`state ${h.state}`}>{h.state}</span></td>
              <td><Meter label={`vCPUs of ${h.name}`} used={h.allocated.cpus} total={h.capacity.cpus} text={`${h.allocated.cpus} / ${h.capacity.cpus}`} /></td>
              <td><Meter label={`memory of ${h.name}`} used={h.allocated.memory} total={h.capacity.memory} text={`${size(h.allocated.memory)} / ${size(h.capacity.memory)}`} /></td>
              <td>{h.allocated.instances}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}

export function EventTable({ events }: { events: ReturnType<typeof useLive>['events'] }) {
  if (events.length === 0) return <p class="muted">No events yet.</p>;
  return (
    <table class="grid events">
      <thead><tr><th>time</th><th>type</th><th>instance</th><th>what</th></tr></thead>
      <tbody>
        {events.map((e, i) => (
          <tr key={e.id ?? `x${i}`}>
            <td>{time(e.time)}</td>
            <td>{e.type}</td>
            <td>{e.instance ? <a href={href.instance(e.instance)}>{e.instance}</a> : ''}</td>
            <td class="data">{summary(e.type, e.data)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function summary(type: string, data: Record<string, unknown>): string {
  if (type === 'instance.state') return `${String(data.from ?? '?')} → ${String(data.to ?? '?')}${data.reason ? ` (${String(data.reason)})` : ''}`;
  const text = JSON.stringify(data);
  return text === '{}' ? '' : text.length > 160 ? `${text.slice(0, 160)}…` : text;
}
