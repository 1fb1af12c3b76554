/**
 * Volumes (list, create, delete), networks and images (lists). Each list is read again when an event of its kind
 * comes (volume.created, network.deleted, image.imported...). An image is uploaded from the browser by the Images
 * page's form (components/image-upload.tsx). Through a controller each list is the union over its hosts, with a
 * host column; a volume or an image is made on the host the form's picker names, and deleted on its own host
 * (components/host-picker.tsx).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, enc, get } from '../api';
import { ask } from '../components/confirm';
import { ImageUpload } from '../components/image-upload';
import { chosenHost, HostPicker, isHostError, Unreachable, useClusterHosts } from '../components/host-picker';
import { controlProps, Field } from '../components/field';
import { notify } from '../components/notice';
import { size, time } from '../format';
import { useLive } from '../live';
import { href } from '../router';
import type { Image, Network, Volume } from '../types';

/** An item of a list: through a controller, with the host it is on. */
type OnHost<T> = T & { host?: string };
type Unreached = Array<{ host: string; reason: string }>;

/** A list read from `path`, and again at each event of `kind` (through a controller: which hosts it could not ask). */
function useList<T>(path: string, key: string, kind: string): { items: Array<OnHost<T>> | null; unreachable: Unreached | undefined; error: string | null; reload: () => void } {
  const l = useLive();
  const [items, setItems] = useState<Array<OnHost<T>> | null>(null);
  const [unreachable, setUnreachable] = useState<Unreached | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  const stamp = l.stamp(kind);
  useEffect(() => {
    get<Record<string, unknown>>(path).then((r) => {
      setItems((r[key] as Array<OnHost<T>> | undefined) ?? []);
      setUnreachable(r.unreachable as Unreached | undefined);
      setError(null);
    }, (e: unknown) => setError((e as Error).message));
  }, [path, stamp, n]);
  return { items, unreachable, error, reload: () => setN((x) => x + 1) };
}

/** A row's key: its name, and its host through a controller (two hosts may each have one of a name). */
const rowKey = (i: { name: string; host?: string }): string => `${i.host ?? ''}/${i.name}`;
const onHost = (i: { host?: string }): string => (i.host ? ` on ${i.host}` : '');

export function Volumes() {
  const { items, unreachable, error, reload } = useList<Volume>('/v1/volumes', 'volumes', 'volume');
  const hosts = useClusterHosts();
  const [form, setForm] = useState({ name: '', size: '1G', format: 'qcow2', host: '' });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const host = chosenHost(hosts, form.host);
  const create = async (e: Event): Promise<void> => {
    e.preventDefault();
    setErrors({});
    try {
      await api('POST', '/v1/volumes', { name: form.name.trim(), size: form.size.trim(), format: form.format }, host);
      notify(`created volume ${form.name}${host ? ` on ${host}` : ''}`);
      setForm({ ...form, name: '' });
      reload();
    } catch (err) {
      const f = isHostError(err) ? 'host' : err instanceof ApiError && err.field && err.field in form ? err.field : 'form';
      setErrors({ [f]: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message });
    }
  };
  const remove = async (v: OnHost<Volume>): Promise<void> => {
    if (!(await ask(`Delete volume ${v.name}`, `Delete the volume "${v.name}"${onHost(v)} and its data? This cannot be undone.`, 'Delete'))) return;
    try {
      await api('DELETE', `/v1/volumes/${enc(v.name)}`, undefined, v.host);
      notify(`deleted volume ${v.name}${onHost(v)}`);
      reload();
    } catch (err) {
      notify(err instanceof ApiError ? `${v.name}: ${err.code}: ${err.message}` : String(err), 'error');
    }
  };
  return (
    <section aria-labelledby="volumes-title">
      <h1 id="volumes-title">Volumes</h1>
      {error && <p class="error">{error}</p>}
      <Unreachable hosts={unreachable} />
      {items && (items.length === 0 ? <p class="muted">No volumes.</p> : (
        <table class="grid">
          <thead><tr><th>name</th>{hosts && <th>host</th>}<th>format</th><th>size</th><th>allocated</th><th>attached to</th><th>clone of</th><th>created</th><th /></tr></thead>
          <tbody>
            {items.map((v) => (
              <tr key={rowKey(v)} data-volume={v.name} data-host={v.host}>
                <td>{v.name}</td>{hosts && <td class="host-cell">{v.host ?? '-'}</td>}<td>{v.format}</td><td>{size(v.virtualSize)}</td><td>{size(v.allocated)}</td>
                <td>{v.attachedTo ? <a href={href.instance(v.attachedTo)}>{v.attachedTo}</a> : '-'}</td>
                <td>{v.backing ?? '-'}</td><td>{time(v.createdAt)}</td>
                <td><button type="button" class="small danger" aria-label={`delete volume ${v.name}${onHost(v)}`} onClick={() => void remove(v)}>delete</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      ))}
      <h2>Create a volume</h2>
      <form class="inline" onSubmit={create}>
        {errors.form && <p class="error" role="alert">{errors.form}</p>}
        {hosts && <HostPicker field="vol-host" hosts={hosts} value={host} error={errors.host} onChange={(h) => setForm({ ...form, host: h })} />}
        <Field field="vol-name" label="name" error={errors.name}><input {...controlProps('vol-name', errors.name)} value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} /></Field>
        <Field field="vol-size" label="size" error={errors.size}><input {...controlProps('vol-size', errors.size)} value={form.size} onInput={(e) => setForm({ ...form, size: e.currentTarget.value })} /></Field>
        <Field field="vol-format" label="format" error={errors.format}>
          <select {...controlProps('vol-format', errors.format)} value={form.format} onChange={(e) => setForm({ ...form, format: e.currentTarget.value })}>
            <option value="qcow2">qcow2</option><option value="raw">raw</option>
          </select>
        </Field>
        <button type="submit">Create volume</button>
      </form>
    </section>
  );
}

export function Networks() {
  const { items, unreachable, error } = useList<Network>('/v1/networks', 'networks', 'network');
  const cluster = items?.some((n) => n.host !== undefined) ?? false;
  return (
    <section aria-labelledby="networks-title">
      <h1 id="networks-title">Networks</h1>
      {error && <p class="error">{error}</p>}
      <Unreachable hosts={unreachable} />
      {items && (
        <table class="grid">
          <thead><tr><th>name</th>{cluster && <th>host</th>}<th>kind</th><th>subnet</th><th>gateway</th><th>DHCP</th><th>NAT</th><th>bridge</th><th>created</th></tr></thead>
          <tbody>
            {items.map((n) => (
              <tr key={rowKey(n)}>
                <td>{n.name}{n.builtin ? ' (built in)' : ''}</td>{cluster && <td class="host-cell">{n.host ?? '-'}</td>}<td>{n.kind}</td><td>{n.cidr ?? '-'}</td><td>{n.gateway ?? '-'}</td>
                <td>{n.dhcp ? `${n.dhcp.start} - ${n.dhcp.end}` : '-'}</td><td>{n.nat ? 'yes' : 'no'}</td><td>{n.bridge ?? '-'}</td><td>{time(n.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted">Networks are made and removed by an admin: <code>corral network create NAME --cidr 10.50.0.0/24</code> (through a controller, with <code>--target HOST</code>).</p>
    </section>
  );
}

export function Images() {
  const { items, unreachable, error, reload } = useList<Image>('/v1/images', 'images', 'image');
  const hosts = useClusterHosts();
  return (
    <section aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      {error && <p class="error">{error}</p>}
      <Unreachable hosts={unreachable} />
      {items && (
        <table class="grid">
          <thead><tr><th>name</th>{hosts && <th>host</th>}<th>kind</th><th>format</th><th>size</th><th>source</th><th>created</th></tr></thead>
          <tbody>
            {items.map((i) => (
              <tr key={rowKey(i)} data-image={i.name} data-host={i.host}>
                <td>{i.name}</td>{hosts && <td class="host-cell">{i.host ?? '-'}</td>}<td>{i.kind}</td><td>{i.format}</td><td>{size(i.virtualSize)}</td><td>{i.source}</td><td>{time(i.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Upload an image</h2>
      <ImageUpload onDone={reload} hosts={hosts} />
      <p class="muted">
        An upload is checked as an import from a file on the host is (<code>corral image import NAME FILE --format qcow2</code>):
        no backing file, no external data file, the format it says; an admin's token is needed.
      </p>
    </section>
  );
}
