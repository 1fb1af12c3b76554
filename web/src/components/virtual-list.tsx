/**
 * A list that renders only the rows in view (and a few around them), so a thousand instances cost what thirty
 * do. Rows have one fixed height; the scroll area keeps the whole list's height.
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

const OVERSCAN = 8;

export function VirtualList<T>(p: { items: readonly T[]; rowHeight: number; row: (item: T, index: number) => ComponentChildren; label: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const el = box.current;
    if (!el) return undefined;
    const ro = new ResizeObserver(() => setHeight(el.clientHeight));
    ro.observe(el);
    setHeight(el.clientHeight);
    return () => ro.disconnect();
  }, []);
  const first = Math.max(0, Math.floor(top / p.rowHeight) - OVERSCAN);
  const last = Math.min(p.items.length, Math.ceil((top + height) / p.rowHeight) + OVERSCAN);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) {
    rows.push(
      <div key={i} class="vrow" role="row" aria-rowindex={i + 2} style={{ top: `${i * p.rowHeight}px`, height: `${p.rowHeight}px` }}>
        {p.row(p.items[i]!, i)}
      </div>,
    );
  }
  return (
    <div class="vlist" ref={box} role="rowgroup" aria-label={p.label} onScroll={(e) => setTop((e.currentTarget as HTMLDivElement).scrollTop)}>
      <div style={{ height: `${p.items.length * p.rowHeight}px`, position: 'relative' }}>{rows}</div>
    </div>
  );
}
