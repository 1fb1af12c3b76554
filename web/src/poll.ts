/**
 * Reading a route again every period while a view is open: one request at a time (the next is asked for once the
 * last has answered), none while the tab is hidden, none after the view is gone.
 */
import { useEffect, useState } from 'preact/hooks';
import { get } from './api';

export interface Polled<T> {
  data: T | null;
  error: string | null;
}

/** Repeat `fn` every `periodMs()` (read again each time) until the returned stop is called; skipped while hidden. */
export function repeat(fn: () => Promise<void>, periodMs: () => number): () => void {
  let gone = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = async (): Promise<void> => {
    if (!document.hidden) await fn().catch(() => undefined);
    if (!gone) timer = setTimeout(() => void run(), periodMs());
  };
  void run();
  return () => {
    gone = true;
    clearTimeout(timer);
  };
}

/** GET `path` now and every `periodMs` (null: nothing to read); the latest answer, or the latest error. */
export function usePoll<T>(path: string | null, periodMs: number): Polled<T> {
  const [state, set] = useState<Polled<T>>({ data: null, error: null });
  useEffect(() => {
    set({ data: null, error: null });
    if (path === null) return undefined;
    let gone = false;
    const stop = repeat(async () => {
      try {
        const data = await get<T>(path);
        if (!gone) set({ data, error: null });
      } catch (e) {
        if (!gone) set((s) => ({ data: s.data, error: (e as Error).message }));
      }
    }, () => periodMs);
    return () => {
      gone = true;
      stop();
    };
  }, [path, periodMs]);
  return state;
}
