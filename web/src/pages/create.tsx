/**
 * Create an instance: image, vCPUs and topology, memory, the display (VGA with a graphical console by default), the root disk, NICs (network and model), volumes (bus),
 * pinning and limits. The form checks nothing itself: it sends what was typed and shows the API's own
 * INVALID_SPEC message next to the field the error names (and moves the focus there). NICs past the first and
 * volumes are attached to the new, stopped instance, as `corral create --volume` does; if one is refused the
 * instance is deleted again, so a refused form leaves nothing behind. Every control is reachable with Tab, and
 * Enter in any text field creates.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, enc, get } from '../api';
import { controlProps, Field, fieldId } from '../components/field';
import { notify } from '../components/notice';
import { live } from '../live';
import { href, navigate } from '../router';
import type { CreateRequest, Image, Instance, Network, Volume } from '../types';

const NIC_MODELS = ['virtio-net', 'e1000', 'rtl8139', 'vhost-net'];
const DISK_BUSES = ['virtio-blk', 'virtio-scsi', 'ide', 'sata'];

interface Nic { network: string; model: string }
interface Vol { volume: string; bus: string }

type Text = Record<string, string>;

const TEXT_FIELDS: Array<[string, string, string?]> = [
  ['sockets', 'sockets'], ['cores', 'cores per socket'], ['threads', 'threads per core'], ['maxCpus', 'max vCPUs (hotplug)'],
  ['cpuModel', 'CPU model', 'auto: host under KVM, max under TCG'], ['pin', 'pin to host CPUs', 'e.g. 0-1'],
  ['cpuWeight', 'CPU weight', '1..10000, 100 is the default'], ['cpuLimit', 'CPU limit', 'in CPUs, e.g. 1.5'],
  ['maxMemory', 'max memory (hotplug)', 'e.g. 2G'], ['memoryLimit', 'memory limit of the QEMU process', 'e.g. 1G'],
];
const INTEGER = new Set(['cpus', 'sockets', 'cores', 'threads', 'maxCpus', 'cpuWeight']);

/** A number typed as one is sent as a number; anything else as typed, for the API to say what is wrong with it. */
function value(key: string, text: string): string | number {
  const t = text.trim();
  if (INTEGER.has(key) && /^-?\d+$/.test(t)) return Number(t);
  if (key === 'cpuLimit' && /^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  return t;
}

/** Which of the form's fields an error from the create call names ("memory", "network" is the first NIC's...). */
function createField(field: string | undefined): string | undefined {
  if (!field) return undefined;
  if (field === 'network') return 'nics.0.network';
  if (field === 'nicModel' || field === 'model') return 'nics.0.model';
  if (field === 'volume' || field === 'bus') return undefined;
  return field.split('.')[0];
}

/** The first item of each name (a controller's union lists hold one per host). */
function byName<T extends { name: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((i) => !seen.has(i.name) && seen.add(i.name));
}

export function CreateInstance() {
  const [images, setImages] = useState<Image[]>([]);
  const [networks, setNetworks] = useState<Network[]>([]);
  const [volumes, setVolumes] = useState<Volume[]>([]);
  const [t, setT] = useState<Text>({ name: '', image: '', cpus: '1', memory: '256M', disk: '', rootBus: 'virtio-blk', firmware: '', accel: 'auto', hugepages: '', forwards: '', display: 'vnc' });
  const [nics, setNics] = useState<Nic[]>([{ network: 'default', model: 'virtio-net' }]);
  const [vols, setVols] = useState<Vol[]>([]);
  const [flags, setFlags] = useState({ start: true, balloon: true, prealloc: false });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    // through a controller the lists are the union over its hosts (each item with its host): one option a name
    get<{ images: Image[] }>('/v1/images').then((r) => {
      setImages(byName(r.images));
      setT((x) => (x.image ? x : { ...x, image: r.images.find((i) => i.name === 'tiny')?.name ?? r.images[0]?.name ?? '' }));
    }, () => undefined);
    get<{ networks: Network[] }>('/v1/networks').then((r) => setNetworks(byName(r.networks)), () => undefined);
    get<{ volumes: Volume[] }>('/v1/volumes').then((r) => setVolumes(r.volumes.filter((v) => v.attachedTo === null)), () => undefined);
  }, []);

  // the name has the focus when the form opens (autofocus works only as a document loads, not on a route change)
  useEffect(() => {
    document.getElementById(fieldId('name'))?.focus();
  }, []);

  // the focus goes to the first field the API refused
  useEffect(() => {
    const first = Object.keys(errors)[0];
    if (first) document.getElementById(fieldId(first))?.focus();
  }, [errors]);

  const set = (k: string) => (e: Event) => setT({ ...t, [k]: (e.currentTarget as HTMLInputElement).value });
  const text = (k: string, label: string, help?: string, extra: Record<string, unknown> = {}) => (
    <Field field={k} label={label} error={errors[k]} help={help}>
      <input {...controlProps(k, errors[k], help)} value={t[k] ?? ''} onInput={set(k)} {...extra} />
    </Field>
  );
  const select = (k: string, label: string, options: Array<[string, string]>) => (
    <Field field={k} label={label} error={errors[k]}>
      <select {...controlProps(k, errors[k])} value={t[k]} onChange={set(k)}>
        {options.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
      </select>
    </Field>
  );

  const refuse = (e: unknown, field: string | undefined): void => {
    const msg = e instanceof ApiError ? `${e.code}: ${e.message}` : (e as Error).message;
    if (field) {
      setErrors({ [field]: msg });
      setFormError(null);
    } else {
      setErrors({});
      setFormError(msg);
    }
  };

  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    if (busy) return;
    setBusy(true);
    setErrors({});
    setFormError(null);
    const body: Record<string, unknown> = { name: t.name!.trim(), image: t.image };
    for (const k of ['cpus', 'memory', 'disk', 'cpuModel', 'pin', 'maxMemory', 'memoryLimit', 'sockets', 'cores', 'threads', 'maxCpus', 'cpuWeight', 'cpuLimit']) {
      if ((t[k] ?? '').trim() !== '') body[k] = value(k, t[k]!);
    }
    if (t.rootBus !== 'virtio-blk') body.rootBus = t.rootBus;
    if (t.firmware) body.firmware = t.firmware;
    body.display = t.display;
    if (t.accel !== 'auto') body.accel = t.accel;
    if (t.hugepages) body.hugepages = t.hugepages;
    if (!flags.balloon) body.balloon = false;
    if (flags.prealloc) body.prealloc = true;
    const first = nics[0];
    if (!first) body.network = 'none';
    else {
      body.network = first.network;
      if (first.model !== 'virtio-net') body.nicModel = first.model;
      const fw = (t.forwards ?? '').split(/[\s,]+/).filter(Boolean);
      if (fw.length > 0) body.forwards = fw;
    }
    const more = nics.length > 1 || vols.length > 0;
    if (flags.start && !more) body.start = true;
    const name = String(body.name);
    const base = `/v1/instances/${enc(name)}`;
    try {
      let inst: Instance;
      try {
        inst = await api<Instance>('POST', '/v1/instances', body as CreateRequest);
      } catch (err) {
        return refuse(err, createField(err instanceof ApiError ? err.field : undefined));
      }
      if (more) {
        let at = '';
        try {
          for (const [i, n] of nics.slice(1).entries()) {
            at = `nics.${i + 1}`;
            await api('POST', `${base}/nics`, { network: n.network, model: n.model });
          }
          for (const [i, v] of vols.entries()) {
            at = `volumes.${i}`;
            await api('POST', `${base}/disks`, { volume: v.volume, bus: v.bus });
          }
        } catch (err) {
          await api('DELETE', base).catch(() => undefined);
          // the row's control the error names (network, model, volume, bus), else its first one
          const f = err instanceof ApiError ? err.field : undefined;
          const own = at.startsWith('nics') ? ['network', 'model'] : ['volume', 'bus'];
          return refuse(err, `${at}.${f && own.includes(f) ? f : own[0]}`);
        }
        inst = flags.start ? await api<Instance>('POST', `${base}/start`, {}) : await get<Instance>(base);
      }
      live().put(inst);
      notify(`created ${inst.name} (${inst.state})`);
      navigate(href.instance(inst.name));
    } catch (err) {
      refuse(err, undefined);
    } finally {
      setBusy(false);
    }
  };

  const netOptions: Array<[string, string]> = [['default', 'default (user-mode NAT)'], ...networks.filter((n) => !n.builtin).map((n): [string, string] => [n.name, `${n.name} (${n.kind}${n.cidr ? ` ${n.cidr}` : ''})`])];
  return (
    <section aria-labelledby="create-title">
      <h1 id="create-title">Create an instance</h1>
      <form class="create" onSubmit={submit} noValidate>
        {formError && <p class="error" role="alert" id="form-error">{formError}</p>}
        <fieldset>
          <legend>Instance</legend>
          {text('name', 'name', 'a-z, 0-9 and -, up to 63 characters', { autofocus: true, autocomplete: 'off', spellcheck: false })}
          {select('image', 'image', images.map((i) => [i.name, `${i.name} (${i.kind}, ${i.format})`]))}
          {text('cpus', 'vCPUs', undefined, { inputMode: 'numeric' })}
          {text('memory', 'memory', 'with a unit: 256M, 1G')}
          {select('accel', 'accelerator', [['auto', 'auto'], ['kvm', 'KVM'], ['tcg', 'TCG']])}
          {select('firmware', 'firmware', [['', 'the image\'s default'], ['bios', 'BIOS (SeaBIOS)'], ['uefi', 'UEFI (OVMF)']])}
          {select('display', 'display', [['vnc', 'VGA, with a graphical console (VNC)'], ['none', 'none (serial console only)']])}
        </fieldset>
        <fieldset>
          <legend>Root disk</legend>
          {text('disk', 'size', 'empty: the image\'s size; larger grows the overlay')}
          {select('rootBus', 'bus', DISK_BUSES.map((b) => [b, b]))}
        </fieldset>
        <fieldset>
          <legend>NICs</legend>
          {nics.length === 0 && <p class="muted">No NICs: the instance has no network.</p>}
          {nics.map((n, i) => (
            <div class="row" key={i}>
              <Field field={`nics.${i}.network`} label={`NIC ${i} network`} error={errors[`nics.${i}.network`]}>
                <select {...controlProps(`nics.${i}.network`, errors[`nics.${i}.network`])} value={n.network} onChange={(e) => setNics(nics.map((x, j) => (j === i ? { ...x, network: e.currentTarget.value } : x)))}>
                  {netOptions.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
                </select>
              </Field>
              <Field field={`nics.${i}.model`} label={`NIC ${i} model`} error={errors[`nics.${i}.model`]}>
                <select {...controlProps(`nics.${i}.model`, errors[`nics.${i}.model`])} value={n.model} onChange={(e) => setNics(nics.map((x, j) => (j === i ? { ...x, model: e.currentTarget.value } : x)))}>
                  {NIC_MODELS.map((m) => <option key={m} value={m}>{m}</option>)}
                </select>
              </Field>
              <button type="button" class="small" aria-label={`remove NIC ${i}`} onClick={() => setNics(nics.filter((_, j) => j !== i))}>remove</button>
            </div>
          ))}
          <button type="button" class="small" onClick={() => setNics([...nics, { network: 'default', model: 'virtio-net' }])}>add a NIC</button>
          {nics[0]?.network === 'default' && text('forwards', 'port forwards of NIC 0', 'e.g. tcp:8022:22 (host port:guest port), separated by commas')}
        </fieldset>
        <fieldset>
          <legend>Volumes</legend>
          {vols.length === 0 && <p class="muted">{volumes.length === 0 ? 'No free volumes (create one on the Volumes page).' : 'None attached.'}</p>}
          {vols.map((v, i) => (
            <div class="row" key={i}>
              <Field field={`volumes.${i}.volume`} label={`volume ${i}`} error={errors[`volumes.${i}.volume`]}>
                <select {...controlProps(`volumes.${i}.volume`, errors[`volumes.${i}.volume`])} value={v.volume} onChange={(e) => setVols(vols.map((x, j) => (j === i ? { ...x, volume: e.currentTarget.value } : x)))}>
                  {volumes.map((x) => <option key={x.name} value={x.name}>{x.name}</option>)}
                </select>
              </Field>
              <Field field={`volumes.${i}.bus`} label={`volume ${i} bus`} error={errors[`volumes.${i}.bus`]}>
                <select {...controlProps(`volumes.${i}.bus`, errors[`volumes.${i}.bus`])} value={v.bus} onChange={(e) => setVols(vols.map((x, j) => (j === i ? { ...x, bus: e.currentTarget.value } : x)))}>
                  {[...DISK_BUSES, 'vhost-user-blk'].map((b) => <option key={b} value={b}>{b}</option>)}
                </select>
              </Field>
              <button type="button" class="small" aria-label={`remove volume ${i}`} onClick={() => setVols(vols.filter((_, j) => j !== i))}>remove</button>
            </div>
          ))}
          {volumes.length > vols.length && <button type="button" class="small" onClick={() => setVols([...vols, { volume: volumes.find((x) => !vols.some((y) => y.volume === x.name))?.name ?? '', bus: 'virtio-blk' }])}>attach a volume</button>}
        </fieldset>
        <details>
          <summary>CPU topology, pinning, memory and limits</summary>
          <fieldset>
            {TEXT_FIELDS.map(([k, label, help]) => <div key={k}>{text(k, label, help)}</div>)}
            {select('hugepages', 'hugepages', [['', 'none'], ['2M', '2 MiB'], ['1G', '1 GiB']])}
            <label class="check"><input type="checkbox" checked={flags.balloon} onChange={(e) => setFlags({ ...flags, balloon: e.currentTarget.checked })} /> balloon with free page reporting</label>
            <label class="check"><input type="checkbox" checked={flags.prealloc} onChange={(e) => setFlags({ ...flags, prealloc: e.currentTarget.checked })} /> preallocate guest memory</label>
          </fieldset>
        </details>
        <label class="check"><input type="checkbox" name="start" checked={flags.start} onChange={(e) => setFlags({ ...flags, start: e.currentTarget.checked })} /> start it once created</label>
        <div class="buttons">
          <a class="button secondary" href={href.instances}>Cancel</a>
          <button type="submit" disabled={busy}>{busy ? 'Creating…' : 'Create'}</button>
        </div>
      </form>
    </section>
  );
}
