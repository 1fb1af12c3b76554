/**
 * Pages by the URL's hash (#/instances, #/instances/web1): the daemon serves one page at /, and a reload or a
 * shared link opens the same view.
 */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { page: 'overview' }
  | { page: 'instances' }
  | { page: 'create' }
  | { page: 'instance'; name: string }
  | { page: 'volumes' }
  | { page: 'networks' }
  | { page: 'images' }
  | { page: 'events' };

export function parseRoute(hash: string): Route {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map((p) => decodeURIComponent(p));
  const [first, second] = parts;
  if (first === 'instances' && second === 'new') return { page: 'create' };
  if (first === 'instances' && second) return { page: 'instance', name: second };
  if (first === 'instances' || first === 'volumes' || first === 'networks' || first === 'images' || first === 'events') return { page: first };
  return { page: 'overview' };
}

export const href = {
  overview: '#/',
  instances: '#/instances',
  create: '#/instances/new',
  instance: (name: string) => `#/instances/${encodeURIComponent(name)}`,
  volumes: '#/volumes',
  networks: '#/networks',
  images: '#/images',
  events: '#/events',
};

export function navigate(to: string): void {
  location.hash = to;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = (): void => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}
