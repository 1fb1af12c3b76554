/** Short messages at the bottom of the page: what an action did, or why it failed (the API's code and message). */
import { useEffect, useState } from 'preact/hooks';

interface Notice {
  id: number;
  text: string;
  kind: 'ok' | 'error';
}

let push: ((n: Notice) => void) | null = null;
let next = 1;

export function notify(text: string, kind: 'ok' | 'error' = 'ok'): void {
  push?.({ id: next++, text, kind });
}

export function NoticeHost() {
  const [list, setList] = useState<Notice[]>([]);
  useEffect(() => {
    push = (n) => {
      setList((l) => [...l.slice(-4), n]);
      setTimeout(() => setList((l) => l.filter((x) => x.id !== n.id)), n.kind === 'error' ? 12_000 : 5_000);
    };
    return () => {
      push = null;
    };
  }, []);
  return (
    <div class="notices" role="status" aria-live="polite">
      {list.map((n) => <div key={n.id} class={`notice ${n.kind}`}>{n.text}</div>)}
    </div>
  );
}
