/**
 * One instance: its state and actions (resize: components/resize.tsx), what it is (size, image, network, accelerator, QEMU pid, why it last
 * ended), its devices with their approach and data path, its serial console and its graphical console
 * (components/vnc.tsx); below them its charts, memory map and vCPU threads (components/instance-views.tsx).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { enc, get } from '../api';
import { Actions } from '../components/actions';
import { InstanceViews } from '../components/instance-views';
import { ResizeButton, ResizeForm } from '../components/resize';
import { GraphicalConsole } from '../components/vnc';
import { duration, size, time } from '../format';
import { useLive } from '../live';
import { href, navigate } from '../router';
import type { Device, ListedInstance } from '../types';
import type { SerialConsole } from '../term';

export function InstancePage({ name }: { name: string }) {
  const l = useLive();
  const inst = l.instances.get(name);
  const [devices, setDevices] = useState<Device[] | null>(null);
  const [resizing, setResizing] = useState(false);
  useEffect(() => {
    l.reread(name);
  }, [name]);
  const running = inst?.state === 'running' || inst?.state === 'paused';
  useEffect(() => {
    get<{ devices: Device[] }>(`/v1/instances/${enc(name)}/devices`).then((r) => setDevices(r.devices), () => setDevices(null));
  }, [name, inst?.updatedAt]);
  // a controller's list holds summaries: the page waits for the instance's own read (l.reread) to have it whole
  if (!inst || inst.spec === undefined) {
    return (
      <section>
        <h1>{name}</h1>
        <p>{l.loaded && !inst ? 'No such instance (it may have been deleted).' : 'Loading…'}</p>
        <p><a href={href.instances}>All instances</a></p>
      </section>
    );
  }
  return (
    <section class="instance" aria-labelledby="instance-title">
      <div class="titlebar">
        <h1 id="instance-title">{inst.name}</h1>
        <span class={`state ${inst.state}`} data-testid="state">{inst.state}</span>
        <Actions inst={inst} onDone={(a) => { if (a === 'delete') navigate(href.instances); }} />
        <ResizeButton open={resizing} inst={inst} onToggle={() => setResizing(!resizing)} />
      </div>
      {resizing && <ResizeForm inst={inst} onClose={() => setResizing(false)} />}
      <div class="panes">
        <div class="pane">
          <h2>Serial console</h2>
          {running ? <Console key={`${name}-${inst.startedAt ?? ''}`} name={name} /> : <p class="muted">The instance is {inst.state}: its console opens once it runs.</p>}
          <h2>Graphical console</h2>
          <GraphicalConsole inst={inst} />
        </div>
        <div class="pane side-pane">
          <h2>Instance</h2>
          <dl>
            {(inst as ListedInstance).host !== undefined && <><dt>host</dt><dd data-testid="host">{(inst as ListedInstance).host}</dd></>}
            <dt>vCPUs</dt><dd>{inst.cpus}</dd>
            <dt>memory</dt><dd>{size(inst.memory)}{inst.rss !== null ? ` (${size(inst.rss)} resident)` : ''}</dd>
            <dt>image</dt><dd>{inst.image}</dd>
            <dt>firmware</dt><dd>{inst.firmware}</dd>
            <dt>network</dt><dd>{inst.network} {inst.mac}</dd>
            <dt>accelerator</dt><dd>{inst.accel ?? '-'}</dd>
            <dt>QEMU pid</dt><dd>{inst.pid ?? '-'}</dd>
            <dt>uptime</dt><dd>{duration(inst.uptime)}</dd>
            <dt>created</dt><dd>{time(inst.createdAt)}</dd>
            <dt>root disk</dt><dd>{inst.disk.path} ({size(inst.disk.allocated)} allocated)</dd>
            {inst.lastError && <><dt>last error</dt><dd class="error">{inst.lastError}</dd></>}
            {inst.lastExit && <><dt>last exit</dt><dd>{inst.lastExit.reason}</dd></>}
          </dl>
          <h2>Devices</h2>
          {devices === null ? <p class="muted">…</p> : (
            <table class="grid devices">
              <thead><tr><th>id</th><th>kind</th><th>approach</th><th>QEMU device</th></tr></thead>
              {devices.map((d) => (
                <tbody key={d.id}>
                  <tr><td>{d.id}</td><td>{d.kind}</td><td>{d.approach}</td><td>{d.qemuDevice}</td></tr>
                  <tr><td colSpan={4} class="data" aria-label={`data path of ${d.id}`}>{d.dataPath}</td></tr>
                </tbody>
              ))}
            </table>
          )}
        </div>
      </div>
      <InstanceViews inst={inst} devices={devices} running={running} />
    </section>
  );
}

function Console({ name }: { name: string }) {
  const el = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState<{ text: string; live: boolean }>({ text: 'loading the terminal…', live: false });
  useEffect(() => {
    let c: SerialConsole | null = null;
    let gone = false;
    void import('../term').then((m) => {
      if (gone || !el.current) return;
      c = m.openSerialConsole(el.current, name, (text, live) => setStatus({ text, live }));
      c.focus();
    });
    return () => {
      gone = true;
      c?.close();
    };
  }, [name]);
  return (
    <div class="console">
      <div ref={el} class="term-box" role="application" aria-label={`serial console of ${name}`} />
      <p class={status.live ? 'console-status live' : 'console-status'} role="status">{status.text}</p>
    </div>
  );
}
