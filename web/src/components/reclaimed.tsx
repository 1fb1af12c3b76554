/**
 * The overview's memory reclaimed from running guests (GET /v1/history, read every 5 s): nothing in QEMU counts
 * what free page reporting gave back, so it is computed from the daemon's latest samples: configured less resident
 * (memory never touched, given back by free page reporting or held by the balloon), and what the balloons hold
 * (configured less the balloon's size). Resident includes QEMU's own memory, so the first is a floor.
 */
import { size } from '../format';
import { usePoll } from '../poll';
import { href } from '../router';
import type { HistorySummary } from '../types';

export function Reclaimed() {
  const { data, error } = usePoll<HistorySummary>('/v1/history', 5000);
  if (!data) return error ? null : <div class="card"><h2>Memory reclaimed</h2><p>…</p></div>;
  const r = data.reclaimed;
  const top = [...data.instances].sort((a, b) => (b.configuredBytes - (b.residentBytes ?? b.configuredBytes)) - (a.configuredBytes - (a.residentBytes ?? a.configuredBytes))).slice(0, 5);
  return (
    <div class="card reclaimed" data-testid="reclaimed">
      <h2>Memory reclaimed</h2>
      <p class="big" data-bytes={r.notResident}>{size(r.notResident)}</p>
      <p class="help">configured and not resident in the host, over {data.instances.length} running instance{data.instances.length === 1 ? '' : 's'}: never touched, given back by free page reporting, or held by a balloon. Computed per instance as configured less QEMU's Rss, which holds QEMU's own memory too (under TCG its translation cache): a floor.</p>
      <dl>
        <dt>configured</dt><dd>{size(r.configured)}</dd>
        <dt>resident</dt><dd>{size(r.resident)}</dd>
        <dt>held by balloons</dt><dd>{size(r.balloon)}</dd>
      </dl>
      {top.length > 0 && (
        <table class="grid compact">
          <thead><tr><th>instance</th><th>resident / configured</th><th>balloon</th></tr></thead>
          <tbody>
            {top.map((i) => (
              <tr key={i.name}>
                <td><a href={href.instance(i.name)}>{i.name}</a></td>
                <td>{size(i.residentBytes)} / {size(i.configuredBytes)}</td>
                <td>{size(i.balloonBytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
