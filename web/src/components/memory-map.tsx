/**
 * The guest's memory map drawn (GET /v1/instances/NAME/memory, read again every 30 s): each guest-physical RAM range
 * as a bar whose width is its share of the guest's RAM, filled as far as it is resident in host RAM (the pagemap of
 * its host-virtual range), with what backs it: the memory backend the range belongs to, as the launch plan makes
 * it (src/qemu/argv.ts memoryBackend).
 */
import { enc } from '../api';
import { size } from '../format';
import { usePoll } from '../poll';
import type { Device, Instance, MemoryStats } from '../types';

const hex = (n: number | null): string => (n === null ? '-' : `0x${n.toString(16)}`);
const W = 1000;
const H = 34;
const COLORS = ['#2257c5', '#067647', '#d9730d', '#7a5af8'];

/** What backs a RAM region: a shared memfd (vhost-user), memfd with hugepages, or anonymous memory on demand. */
export function backing(region: string, spec: Instance['spec'], devices: readonly Device[]): string {
  const shared = devices.find((d) => d.kind === 'memory' && d.id === region && d.approach === 'vhost-user');
  const what = region.startsWith('vmem') ? 'virtio-mem hotplug, ' : 'boot RAM, ';
  if (shared) return `${what}${shared.qemuDevice}`;
  if (spec.hugepages) return `${what}memory-backend-memfd on ${spec.hugepages} hugepages`;
  return `${what}memory-backend-ram (anonymous, ${spec.prealloc ? 'preallocated' : 'allocated on first touch'})`;
}

export function MemoryMap({ inst, devices }: { inst: Instance; devices: readonly Device[] }) {
  const { data, error } = usePoll<MemoryStats>(`/v1/instances/${enc(inst.name)}/memory`, 30_000);
  if (!data) return <p class="muted">{error ?? 'Reading the memory map…'}</p>;
  const map = data.map;
  if (map.length === 0) return <p class="muted">QEMU showed no RAM ranges.</p>;
  const total = map.reduce((a, m) => a + m.size, 0);
  const resident = map.reduce((a, m) => a + (m.resident ?? 0), 0);
  let x = 0;
  const bars = map.map((m, i) => {
    // each range its share of the width, at least 4 units so that a small one (the low 640 KiB) is seen
    const w = Math.max(4, (m.size / total) * (W - 4 * map.length));
    const share = m.resident === null ? 0 : m.resident / m.size;
    const bar = { m, i, x, w, share };
    x += w + 4;
    return bar;
  });
  return (
    <div class="memory-map">
      <p class="muted">{size(resident)} of {size(total)} guest RAM resident in the host; QEMU's Rss {size(data.host.rss)}.</p>
      <svg viewBox={`0 0 ${x} ${H}`} preserveAspectRatio="none" role="img" aria-label="guest-physical RAM ranges, filled as far as resident" class="map-bar">
        {bars.map(({ m, i, x: bx, w, share }) => (
          <g key={`${m.region}-${m.gpaStart}`} class="range" data-region={m.region} data-resident={m.resident ?? ''} data-size={m.size}>
            <title>{`${m.region} ${hex(m.gpaStart)}-${hex(m.gpaEnd)}: ${size(m.resident)} of ${size(m.size)} resident`}</title>
            <rect x={bx} y={2} width={w} height={H - 4} fill="#e4e7ec" stroke={COLORS[i % COLORS.length]} stroke-width={1.5} vector-effect="non-scaling-stroke" />
            <rect class="resident" x={bx} y={2} width={w * share} height={H - 4} fill={COLORS[i % COLORS.length]} fill-opacity={0.75} />
          </g>
        ))}
      </svg>
      <table class="grid compact">
        <thead><tr><th>guest-physical</th><th>size</th><th>resident</th><th>host-virtual (QEMU)</th><th>backed by</th></tr></thead>
        <tbody>
          {map.map((m, i) => (
            <tr key={`${m.region}-${m.gpaStart}`}>
              <td class="data"><span class="swatch" style={{ background: COLORS[i % COLORS.length] }} />{hex(m.gpaStart)}–{hex(m.gpaEnd)}</td>
              <td>{size(m.size)}</td>
              <td>{m.resident === null ? 'unreadable' : `${size(m.resident)} (${Math.round((m.resident / m.size) * 100)} %)`}{m.swapped ? `, ${size(m.swapped)} swapped` : ''}</td>
              <td class="data">{hex(m.hvaStart)}–{hex(m.hvaEnd)}</td>
              <td><code>{m.region}</code>: {backing(m.region, inst.spec, devices)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
