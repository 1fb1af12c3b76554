/**
 * The console's frame: the login until there is a session, then the navigation and the page the URL's hash names.
 * One live feed (events and the instance list) serves every page while logged in.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { currentSession, get, logout, whenLoggedOut } from './api';
import { ConfirmHost } from './components/confirm';
import { NoticeHost } from './components/notice';
import { Live, setLive } from './live';
import { href, useRoute, type Route } from './router';
import { isClusterPool, type AnyPool, type ClusterPool, type Host, type Session } from './types';
import { Login } from './pages/login';
import { Overview } from './pages/overview';
import { Instances } from './pages/instances';
import { CreateInstance } from './pages/create';
import { InstancePage } from './pages/instance';
import { Images, Networks, Volumes } from './pages/lists';
import { Events } from './pages/events';

const NAV: Array<[Route['page'], string, string]> = [
  ['overview', 'Overview', href.overview],
  ['instances', 'Instances', href.instances],
  ['volumes', 'Volumes', href.volumes],
  ['networks', 'Networks', href.networks],
  ['images', 'Images', href.images],
  ['events', 'Events', href.events],
];

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'overview': return <Overview />;
    case 'instances': return <Instances />;
    case 'create': return <CreateInstance />;
    case 'instance': return <InstancePage name={route.name} />;
    case 'volumes': return <Volumes />;
    case 'networks': return <Networks />;
    case 'images': return <Images />;
    case 'events': return <Events />;
  }
}

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [host, setHost] = useState<Host | null>(null);
  const [cluster, setCluster] = useState<ClusterPool | null>(null);
  const route = useRoute();

  useEffect(() => {
    whenLoggedOut(() => setSession(null));
    currentSession().then(setSession, () => setSession(null));
  }, []);

  // made while rendering, before the pages that read it; started (and stopped) with the session
  const feed = useMemo(() => {
    const l = session ? new Live(() => setSession(null)) : null;
    setLive(l);
    return l;
  }, [session?.who, session?.csrf]);
  useEffect(() => {
    if (!feed) return undefined;
    feed.start();
    // a controller's pool names its hosts; it has no /v1/host of its own (that is each host's): ask only a daemon
    get<AnyPool>('/v1/pool').then((p) => {
      if (isClusterPool(p)) setCluster(p);
      else get<Host>('/v1/host').then(setHost, () => undefined);
    }, () => undefined);
    return () => feed.stop();
  }, [feed]);

  if (session === undefined) return <main class="center" aria-busy="true">Loading…</main>;
  if (session === null) return <Login onLoggedIn={setSession} />;
  const current = route.page === 'create' || route.page === 'instance' ? 'instances' : route.page;
  return (
    <div class="frame">
      <header class="top">
        <a class="brand" href={href.overview}>Corral</a>
        <span class="host">{host ? `${host.hostname} · ${host.accelerator.toUpperCase()} · QEMU ${host.qemu.version}` : cluster ? `cluster · ${cluster.hosts.length} host${cluster.hosts.length === 1 ? '' : 's'}` : ''}</span>
        <span class="who" title={`role: ${session.role}`}>{session.who} ({session.role})</span>
        <button type="button" class="small" onClick={() => { void logout().finally(() => setSession(null)); }}>Log out</button>
      </header>
      <nav class="side" aria-label="pages">
        {NAV.map(([page, label, to]) => <a key={page} href={to} aria-current={current === page ? 'page' : undefined}>{label}</a>)}
      </nav>
      <main class="content"><Page route={route} /></main>
      <ConfirmHost />
      <NoticeHost />
    </div>
  );
}
