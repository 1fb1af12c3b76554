/**
 * An instance's charts (uPlot): vCPU time in percent of its vCPUs, resident vs configured vs balloon memory, disk and
 * NIC throughput, from the daemon's history (GET /v1/instances/NAME/history: a sample every 5 s, an hour kept; rates
 * computed by the daemon). The whole history is read once, then only what is new (?since=), once per step while
 * the page is open and shown: a point more each time.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { enc, get } from '../api';
import { size } from '../format';
import { repeat } from '../poll';
import type { HistorySeries, InstanceHistory } from '../types';

/** b after a, the oldest dropped past `cap` samples. */
function append(a: HistorySeries, b: HistorySeries, cap: number): HistorySeries {
  const out = {} as Record<keyof HistorySeries, Array<number | null>>;
  for (const k of Object.keys(a) as Array<keyof HistorySeries>) out[k] = [...a[k], ...b[k]].slice(-cap);
  return out as HistorySeries;
}

/** The history of an instance, kept up to date at the daemon's step. */
type History = { series: HistorySeries; stepMs: number; nicSources: InstanceHistory['nicSources'] };

export function useHistory(name: string): History | null {
  const [state, setState] = useState<History | null>(null);
  useEffect(() => {
    setState(null);
    let series: HistorySeries | null = null;
    let step = 5000;
    let gone = false;
    const stop = repeat(async () => {
      const last = series?.t[series.t.length - 1];
      const r = await get<InstanceHistory>(`/v1/instances/${enc(name)}/history${last === undefined ? '' : `?since=${last}`}`);
      if (gone) return;
      step = r.stepMs;
      series = series ? append(series, r.series, r.capacity) : r.series;
      setState({ series, stepMs: step, nicSources: r.nicSources });
    }, () => step);
    return () => {
      gone = true;
      stop();
    };
  }, [name]);
  return state;
}

interface Line {
  label: string;
  values: Array<number | null>;
  stroke: string;
  fill?: string;
  dash?: number[];
}

const HEIGHT = 170;
const rate = (v: number): string => `${size(Math.round(v))}/s`;
const pct = (v: number): string => `${v.toFixed(v < 10 ? 1 : 0)} %`;
const bytes = (v: number): string => size(Math.round(v));

/** One uPlot chart over the history's times; its points counted in data-points (what uPlot was given). */
function Chart({ id, title, t, lines, format }: { id: string; title: string; t: number[]; lines: Line[]; format: (v: number) => string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const [lib, setLib] = useState<typeof uPlot | null>(null);
  const data = (): uPlot.AlignedData => [t.map((x) => x / 1000), ...lines.map((l) => l.values)] as uPlot.AlignedData;
  useEffect(() => {
    void import('../uplot').then((m) => setLib(() => m.default));
  }, []);
  useEffect(() => {
    const el = box.current;
    if (!lib || !el) return undefined;
    const u = new lib({
      width: el.clientWidth || 400, height: HEIGHT,
      series: [{}, ...lines.map((l) => ({
        label: l.label, stroke: l.stroke, width: 1.5, ...(l.fill ? { fill: l.fill } : {}), ...(l.dash ? { dash: l.dash } : {}),
        value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '-' : format(v)),
      }))],
      axes: [{}, { size: 72, values: (_u, ticks) => ticks.map(format) }],
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    }, data(), el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: el.clientWidth, height: HEIGHT }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [lib, lines.length]);
  useEffect(() => {
    plot.current?.setData(data());
  }, [t, lib]);
  return (
    <figure class="chart" data-chart={id} data-points={lib ? t.length : 0} aria-label={`${title}: ${t.length} samples`}>
      <figcaption>{title}</figcaption>
      <div ref={box} class="chart-box" />
    </figure>
  );
}

const empty = (xs: Array<number | null>): boolean => xs.every((x) => x === null);

export function Charts({ name }: { name: string }) {
  const h = useHistory(name);
  if (!h) return <p class="muted">Reading the history…</p>;
  const s = h.series;
  if (s.t.length === 0) return <p class="muted">No samples yet: the daemon takes one every {h.stepMs / 1000} s while the instance runs.</p>;
  return (
    <div class="charts">
      <Chart id="cpu" title="vCPU time (% of its vCPUs)" t={s.t} format={pct} lines={[
        { label: 'vCPUs', values: s.cpuPercent, stroke: '#2257c5', fill: 'rgba(34,87,197,0.12)' },
      ]} />
      <Chart id="memory" title="Memory: resident vs configured vs balloon" t={s.t} format={bytes} lines={[
        { label: 'resident (Rss)', values: s.residentBytes, stroke: '#2257c5', fill: 'rgba(34,87,197,0.12)' },
        { label: 'guest RAM resident', values: s.guestResidentBytes, stroke: '#6941c6' },
        { label: 'configured', values: s.configuredBytes, stroke: '#667085', dash: [6, 4] },
        ...(empty(s.balloonBytes) ? [] : [{ label: 'balloon (guest has)', values: s.balloonBytes, stroke: '#d9730d', dash: [2, 3] }]),
      ]} />
      <Chart id="disk" title="Disk throughput (all disks)" t={s.t} format={rate} lines={[
        { label: 'read', values: s.diskReadRate, stroke: '#067647' },
        { label: 'write', values: s.diskWriteRate, stroke: '#b42318' },
      ]} />
      {empty(s.nicRxBytes) && empty(s.nicTxBytes)
        ? <figure class="chart" data-chart="nic"><figcaption>NIC throughput</figcaption><p class="muted">No NIC counters yet: a tap-backed NIC has the host's; a user-mode NIC has those its guest agent reports, once the agent answers.</p></figure>
        : <Chart id="nic" title={`NIC throughput (all NICs, as the guest sees it${h.nicSources.includes('guest-agent') ? '; reported by the guest agent' : ''})`} t={s.t} format={rate} lines={[
          { label: 'received', values: s.nicRxRate, stroke: '#067647' },
          { label: 'sent', values: s.nicTxRate, stroke: '#2257c5' },
        ]} />}
    </div>
  );
}
