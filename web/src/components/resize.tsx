/**
 * Resize an instance's vCPUs and memory from its page: POST /v1/instances/NAME/cpus {count} and .../memory {size},
 * each sent only when its value changed. A running instance changes live (vCPU hotplug up to its maxCpus; memory
 * by virtio-mem above the boot size up to maxMemory, by the balloon below it); a stopped one keeps the values for
 * its next start (as `corral set`). The API's refusal is shown under the field it names.
 */
import { useState } from 'preact/hooks';
import { api, ApiError, enc } from '../api';
import { live } from '../live';
import type { Instance } from '../types';
import { controlProps, Field } from './field';
import { notify } from './notice';

const MiB = 1024 * 1024;
const RESIZABLE = ['running', 'stopped', 'crashed', 'error'];

export function ResizeButton({ open, inst, onToggle }: { open: boolean; inst: Pick<Instance, 'name' | 'state'>; onToggle: () => void }) {
  return (
    <button type="button" class="small" aria-expanded={open} aria-label={`resize ${inst.name}`} disabled={!RESIZABLE.includes(inst.state)} onClick={onToggle}>
      resize
    </button>
  );
}

export function ResizeForm({ inst, onClose }: { inst: Pick<Instance, 'name' | 'state' | 'cpus' | 'memory'>; onClose: () => void }) {
  const [cpus, setCpus] = useState(String(inst.cpus));
  const [memory, setMemory] = useState(`${Math.round(inst.memory / MiB)}M`);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const running = inst.state === 'running';
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    setErrors({});
    setBusy(true);
    const base = `/v1/instances/${enc(inst.name)}`;
    const done: string[] = [];
    let field = 'cpus';
    try {
      if (cpus.trim() !== String(inst.cpus)) {
        await api('POST', `${base}/cpus`, { count: Number(cpus.trim()) });
        done.push(`${cpus.trim()} vCPUs`);
      }
      field = 'memory';
      if (memory.trim() !== `${Math.round(inst.memory / MiB)}M`) {
        await api('POST', `${base}/memory`, { size: memory.trim() });
        done.push(`memory ${memory.trim()}`);
      }
      notify(done.length === 0 ? `${inst.name}: nothing changed` : `${inst.name}: ${done.join(', ')}${running ? ' (live)' : ' (from its next start)'}`);
      onClose();
    } catch (err) {
      const f = err instanceof ApiError && (err.field === 'cpus' || err.field === 'memory') ? err.field : field;
      setErrors({ [f]: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message });
    } finally {
      setBusy(false);
      live().reread(inst.name);
    }
  };
  return (
    <form class="inline resize" onSubmit={submit} aria-label={`resize ${inst.name}`}>
      <Field field="resize-cpus" label="vCPUs" error={errors.cpus} help={running ? 'live: hotplug up to its maxCpus' : 'from its next start'}>
        <input {...controlProps('resize-cpus', errors.cpus, 'help')} type="number" min={1} value={cpus} onInput={(e) => setCpus(e.currentTarget.value)} />
      </Field>
      <Field field="resize-memory" label="memory" error={errors.memory} help={running ? 'live: virtio-mem up to maxMemory, the balloon below the boot size' : 'from its next start'}>
        <input {...controlProps('resize-memory', errors.memory, 'help')} value={memory} onInput={(e) => setMemory(e.currentTarget.value)} />
      </Field>
      <button type="submit" disabled={busy}>{busy ? '…' : 'Resize'}</button>
      <button type="button" class="small" onClick={onClose}>cancel</button>
    </form>
  );
}
