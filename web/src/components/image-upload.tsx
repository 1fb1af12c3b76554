/**
 * The Images page's upload form: a name, a format and a file from this computer, sent as the body of
 * POST /v1/images/NAME/upload?format= (XMLHttpRequest, for its upload progress). One bar follows the upload, a
 * second the import's own progress lines (inspect, copy) as the daemon streams them; the API's coded refusal is
 * shown under the field it names (TOO_LARGE under the file, INVALID_IMAGE under the format, ALREADY_EXISTS under
 * the name). Through a controller (`hosts` not null) the form says which host the image goes to: the controller
 * relays the body to it as it comes, and the host's own progress lines and refusals come back as they are.
 */
import { useState } from 'preact/hooks';
import { ApiError, enc, uploadJob } from '../api';
import { size } from '../format';
import { controlProps, Field } from './field';
import { chosenHost, HostPicker, isHostError } from './host-picker';
import { notify } from './notice';

const FIELDS: Record<string, string> = { name: 'name', format: 'format', file: 'file', body: 'file' };

export function ImageUpload({ onDone, hosts }: { onDone: () => void; hosts: string[] | null }) {
  const [name, setName] = useState('');
  const [picked, setPicked] = useState('');
  const host = chosenHost(hosts, picked);
  const [format, setFormat] = useState('qcow2');
  const [file, setFile] = useState<File | null>(null);
  const [sent, setSent] = useState<number | null>(null);
  const [job, setJob] = useState<{ message: string; percent: number } | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event): Promise<void> => {
    e.preventDefault();
    const n = name.trim();
    setErrors({});
    if (!file) {
      setErrors({ file: 'choose the image file to upload' });
      return;
    }
    setBusy(true);
    setSent(0);
    setJob(null);
    try {
      await uploadJob(`/v1/images/${enc(n)}/upload?format=${enc(format)}`, file, setSent, (l) => {
        if (l.type === 'progress' && l.step !== 'receive') setJob({ message: l.message ?? l.step ?? '', percent: l.percent ?? 0 });
      }, host);
      setJob({ message: `image ${n} imported`, percent: 100 });
      notify(`imported image ${n}${host ? ` on ${host}` : ''}`);
      setName('');
      onDone();
    } catch (err) {
      setJob(null); // the import's bar stops where it was: the refusal says why, under its field
      const f = isHostError(err) ? 'host' : err instanceof ApiError && err.field ? FIELDS[err.field] ?? 'form' : 'form';
      setErrors({ [f]: err instanceof ApiError ? `${err.code}: ${err.message}` : (err as Error).message });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="inline upload" onSubmit={submit} aria-label="upload an image">
      {errors.form && <p class="error" role="alert">{errors.form}</p>}
      {hosts && <HostPicker field="img-host" hosts={hosts} value={host} error={errors.host} onChange={setPicked} />}
      <Field field="img-name" label="name" error={errors.name}>
        <input {...controlProps('img-name', errors.name)} value={name} required onInput={(e) => setName(e.currentTarget.value)} />
      </Field>
      <Field field="img-format" label="format" error={errors.format}>
        <select {...controlProps('img-format', errors.format)} value={format} onChange={(e) => setFormat(e.currentTarget.value)}>
          <option value="qcow2">qcow2</option><option value="raw">raw</option>
        </select>
      </Field>
      <Field field="img-file" label="file" error={errors.file} help={file ? size(file.size) : undefined}>
        <input {...controlProps('img-file', errors.file, file ? 'help' : undefined)} type="file" onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </Field>
      <button type="submit" disabled={busy}>{busy ? 'Uploading…' : 'Upload image'}</button>
      {sent !== null && (
        <div class="upload-progress">
          <label for="img-sent">upload</label>
          <progress id="img-sent" max={100} value={Math.round(sent * 100)} aria-valuetext={`${Math.round(sent * 100)}%`} />
          <span data-testid="upload-sent">{Math.round(sent * 100)}%</span>
          {job && (
            <>
              <label for="img-job">import</label>
              <progress id="img-job" max={100} value={job.percent} />
              <span data-testid="upload-job">{job.message} {job.percent}%</span>
            </>
          )}
        </div>
      )}
    </form>
  );
}
