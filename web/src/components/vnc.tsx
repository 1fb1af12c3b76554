/**
 * The graphical console: noVNC's RFB client on the API's VNC websocket (/v1/instances/NAME/vnc, which the daemon
 * bridges to QEMU's VNC unix socket; the session cookie goes along, as with the serial console). Loaded on demand
 * (noVNC is its own chunk). Ctrl-Alt-Del goes to the guest from a button (the browser keeps that chord); the
 * screen is scaled to fit the pane unless unticked. An instance without a display says so and opens nothing.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import type RFB from '@novnc/novnc/lib/rfb';
import { enc } from '../api';
import type { Instance } from '../types';

export function GraphicalConsole({ inst }: { inst: Instance }) {
  if (inst.spec.display !== 'vnc') {
    return (
      <p class="muted" data-testid="no-display">
        This instance has no display (it was created with display none), so it has no graphical console. While it is
        stopped, <code>corral set {inst.name} display=vnc</code> gives it one from its next start.
      </p>
    );
  }
  if (inst.state !== 'running' && inst.state !== 'paused') return <p class="muted">The instance is {inst.state}: its screen shows once it runs.</p>;
  return <Screen key={`${inst.name}-${inst.startedAt ?? ''}`} name={inst.name} />;
}

function Screen({ name }: { name: string }) {
  const el = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB | null>(null);
  const [status, setStatus] = useState<{ text: string; live: boolean }>({ text: 'loading the VNC client…', live: false });
  const [fit, setFit] = useState(true);
  useEffect(() => {
    let gone = false;
    void import('@novnc/novnc/lib/rfb').then((m) => {
      if (gone || !el.current) return;
      // the package is CommonJS: its default export may come wrapped once more
      const Rfb = ((m.default as unknown as { default?: typeof RFB }).default ?? m.default) as typeof RFB;
      const r = new Rfb(el.current, `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/instances/${enc(name)}/vnc`, { shared: true });
      r.scaleViewport = true;
      r.background = '#111';
      r.addEventListener('connect', () => setStatus({ text: 'connected: click the screen to type into the guest', live: true }));
      r.addEventListener('disconnect', (e) => {
        if (gone) return;
        const clean = (e as CustomEvent<{ clean: boolean }>).detail?.clean;
        setStatus({ text: clean ? 'disconnected' : 'disconnected (the instance stopped, too many viewers, or the session ended)', live: false });
      });
      rfb.current = r;
    });
    return () => {
      gone = true;
      rfb.current?.disconnect();
      rfb.current = null;
    };
  }, [name]);
  useEffect(() => {
    if (rfb.current) rfb.current.scaleViewport = fit;
  }, [fit, status.live]);
  return (
    <div class="console vnc">
      <div class="vnc-tools">
        <button type="button" class="small" disabled={!status.live} onClick={() => { rfb.current?.sendCtrlAltDel(); rfb.current?.focus(); }}>Ctrl-Alt-Del</button>
        <label class="check"><input type="checkbox" checked={fit} onChange={(e) => setFit(e.currentTarget.checked)} /> scale to fit</label>
      </div>
      <div ref={el} class={fit ? 'vnc-screen fit' : 'vnc-screen'} role="application" aria-label={`graphical console of ${name}`} />
      <p class={status.live ? 'console-status live' : 'console-status'} role="status">{status.text}</p>
    </div>
  );
}
