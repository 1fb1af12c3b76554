/**
 * The overview's memory reclaimed from running guests (GET /v1/history, read every 5 s): nothing in QEMU counts
 * what free page reporting gave back, so it is measured from the daemon's latest samples: per instance, configured
 * less the host memory resident for its guest RAM (the Rss of QEMU's mappings of its RAM blocks, QEMU's own memory
 * left out). The balloons' share is a part of it, shown on its own.
 */
import { size } from '../format';
import { usePoll } from '../poll';
import { href } from '../router';
import type { HistorySummary } from '../types';

export function Reclaimed() {
  const { data, error } = usePoll<HistorySummary>('/v1/history', 5000);
  if (!data) return error ? null : <div class="card"><h2>Memory reclaimed</h2><p>…</p></div>;
  const r = data.reclaimed;
  const free = (i: HistorySummary['instances'][number]): number => (i.guestResidentBytes === null ? 0 : Math.max(0, i.configuredBytes - i.guestResidentBytes));
  const top = [...data.instances].sort((a, b) => free(b) - free(a)).slice(0, 5);
  return (
    <div class="card reclaimed" data-testid="reclaimed">
      <h2>Memory reclaimed</h2>
      <p class="big" data-bytes={r.notResident}>{size(r.notResident)}</p>
      <p class="help">guest RAM the host does not hold, over {data.instances.length} running instance{data.instances.length === 1 ? '' : 's'}: never touched, given back by free page reporting, or held by a balloon. Measured per instance as configured less the host memory resident for its guest RAM (QEMU's own memory, such as its translation cache under TCG, is not counted).</p>
      <dl>
        <dt>configured</dt><dd>{size(r.configured)}</dd>
        <dt>guest RAM resident</dt><dd>{size(r.guestResident)}</dd>
        <dt>of it, held by balloons</dt><dd>{size(r.balloon)}</dd>
      </dl>
      {top.length > 0 && (
        <table class="grid compact">
          <thead><tr><th>instance</th><th title="guest RAM resident in the host / configured">resident / configured</th><th>balloon</th></tr></thead>
          <tbody>
            {top.map((i) => (
              <tr key={i.name} data-instance={i.name}>
                <td><a href={href.instance(i.name)}>{i.name}</a></td>
                <td>{size(i.guestResidentBytes)} / {size(i.configuredBytes)}</td>
                <td>{size(i.balloonBytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
