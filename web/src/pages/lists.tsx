/**
 * Volumes (list, create, delete), networks and images (lists). Each list is read again when an event of its kind
 * comes (volume.created, network.deleted, image.imported...). An image is uploaded from the browser by the Images
 * page's form (components/image-upload.tsx).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, enc, get } from '../api';
import { ask } from '../components/confirm';
import { ImageUpload } from '../components/image-upload';
import { controlProps, Field } from '../components/field';
import { notify } from '../components/notice';
import { size, time } from '../format';
import { useLive } from '../live';
import { href } from '../router';
import type { Image, Network, Volume } from '../types';

/** A list read from `path`, and again at each event of `kind`. */
function useList<T>(path: string, key: string, kind: string): { items: T[] | null; error: string | null; reload: () => void } {
  const l = useLive();
  const [items, setItems] = useState<T[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  const stamp = l.stamp(kind);
  useEffect(() => {
    get<Record<string, T[]>>(path).then((r) => { setItems(r[key] ?? []); setError(null); }, (e: unknown) => setError((e as Error).message));
  }, [path, stamp, n]);
  return { items, error, reload: () => setN((x) => x + 1) };
}

export function Volumes() {
  const { items, error, reload } = useList<Volume>('/v1/volumes', 'volumes', 'volume');
  const [form, setForm] = useState({ name: '', size: '1G', format: 'qcow2' });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const create = async (e: Event): Promise<void> => {
    e.preventDefault();
    setErrors({});
    try {
      await api('POST', '/v1/volumes', { name: form.name.trim(), size: form.size.trim(), format: form.format });
      notify(`created volume ${form.name}`);
      setForm({ ...form, name: '' });
      reload();
    } catch (err) {
      const f = err instanceof ApiError && err.field && err.field in form ? err.field : 'form';
      setErrors({ [f]: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message });
    }
  };
  const remove = async (v: Volume): Promise<void> => {
    if (!(await ask(`Delete volume ${v.name}`, `Delete the volume "${v.name}" and its data? This cannot be undone.`, 'Delete'))) return;
    try {
      await api('DELETE', `/v1/volumes/${enc(v.name)}`);
      notify(`deleted volume ${v.name}`);
      reload();
    } catch (err) {
      notify(err instanceof ApiError ? `${v.name}: ${err.code}: ${err.message}` : String(err), 'error');
    }
  };
  return (
    <section aria-labelledby="volumes-title">
      <h1 id="volumes-title">Volumes</h1>
      {error && <p class="error">{error}</p>}
      {items && (items.length === 0 ? <p class="muted">No volumes.</p> : (
        <table class="grid">
          <thead><tr><th>name</th><th>format</th><th>size</th><th>allocated</th><th>attached to</th><th>clone of</th><th>created</th><th /></tr></thead>
          <tbody>
            {items.map((v) => (
              <tr key={v.name}>
                <td>{v.name}</td><td>{v.format}</td><td>{size(v.virtualSize)}</td><td>{size(v.allocated)}</td>
                <td>{v.attachedTo ? <a href={href.instance(v.attachedTo)}>{v.attachedTo}</a> : '-'}</td>
                <td>{v.backing ?? '-'}</td><td>{time(v.createdAt)}</td>
                <td><button type="button" class="small danger" aria-label={`delete volume ${v.name}`} onClick={() => void remove(v)}>delete</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      ))}
      <h2>Create a volume</h2>
      <form class="inline" onSubmit={create}>
        {errors.form && <p class="error" role="alert">{errors.form}</p>}
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
  const { items, error } = useList<Network>('/v1/networks', 'networks', 'network');
  return (
    <section aria-labelledby="networks-title">
      <h1 id="networks-title">Networks</h1>
      {error && <p class="error">{error}</p>}
      {items && (
        <table class="grid">
          <thead><tr><th>name</th><th>kind</th><th>subnet</th><th>gateway</th><th>DHCP</th><th>NAT</th><th>bridge</th><th>created</th></tr></thead>
          <tbody>
            {items.map((n) => (
              <tr key={n.name}>
                <td>{n.name}{n.builtin ? ' (built in)' : ''}</td><td>{n.kind}</td><td>{n.cidr ?? '-'}</td><td>{n.gateway ?? '-'}</td>
                <td>{n.dhcp ? `${n.dhcp.start} - ${n.dhcp.end}` : '-'}</td><td>{n.nat ? 'yes' : 'no'}</td><td>{n.bridge ?? '-'}</td><td>{time(n.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted">Networks are made and removed by an admin: <code>corral network create NAME --cidr 10.50.0.0/24</code>.</p>
    </section>
  );
}

export function Images() {
  const { items, error, reload } = useList<Image>('/v1/images', 'images', 'image');
  return (
    <section aria-labelledby="images-title">
      <h1 id="images-title">Images</h1>
      {error && <p class="error">{error}</p>}
      {items && (
        <table class="grid">
          <thead><tr><th>name</th><th>kind</th><th>format</th><th>size</th><th>source</th><th>created</th></tr></thead>
          <tbody>
            {items.map((i) => (
              <tr key={i.name}><td>{i.name}</td><td>{i.kind}</td><td>{i.format}</td><td>{size(i.virtualSize)}</td><td>{i.source}</td><td>{time(i.createdAt)}</td></tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Upload an image</h2>
      <ImageUpload onDone={reload} />
      <p class="muted">
        An upload is checked as an import from a file on the host is (<code>corral image import NAME FILE --format qcow2</code>):
        no backing file, no external data file, the format it says; an admin's token is needed.
      </p>
    </section>
  );
}
