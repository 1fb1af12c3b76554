/**
 * Through a cluster controller, a volume, an image or a network is one host's: a form that makes one says on which
 * host (the x-corral-target header, as the CLI's --target), and an action on one goes to the host the list names
 * for it. On a daemon there is no choice to make and nothing is shown.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get } from '../api';
import { isClusterPool, type AnyPool } from '../types';
import { controlProps, Field } from './field';

/** The hosts a controller's pool names that answer (up, or in maintenance), in name order; null on a daemon. */
export function useClusterHosts(): string[] | null {
  const [hosts, setHosts] = useState<string[] | null>(null);
  useEffect(() => {
    get<AnyPool>('/v1/pool').then((p) => {
      if (!isClusterPool(p)) return;
      setHosts(p.hosts.filter((h) => h.state === 'up' || h.state === 'maintenance').map((h) => h.name).sort());
    }, () => undefined);
  }, []);
  return hosts;
}

/** The host a form sends to: the one chosen, else the first that answers (undefined on a daemon). */
export function chosenHost(hosts: string[] | null, chosen: string): string | undefined {
  if (hosts === null) return undefined;
  return hosts.includes(chosen) ? chosen : hosts[0];
}

/** Whether a refusal is about the host (no such host, not up, none named): it is shown under the host picker. */
export function isHostError(err: unknown): boolean {
  return err instanceof ApiError && (err.field === 'target' || ['TARGET_REQUIRED', 'HOST_NOT_FOUND', 'HOST_UNAVAILABLE'].includes(err.code));
}

export function HostPicker(p: { field: string; hosts: string[]; value: string | undefined; error: string | undefined; onChange: (host: string) => void }) {
  return (
    <Field field={p.field} label="host" error={p.error}>
      <select {...controlProps(p.field, p.error)} value={p.value ?? ''} onChange={(e) => p.onChange(e.currentTarget.value)}>
        {p.hosts.map((h) => <option key={h} value={h}>{h}</option>)}
      </select>
    </Field>
  );
}

/** The hosts a controller's union list could not ask, and why (none on a daemon). */
export function Unreachable({ hosts }: { hosts: Array<{ host: string; reason: string }> | undefined }) {
  if (!hosts || hosts.length === 0) return null;
  return <p class="muted" role="status">Not listed: {hosts.map((h) => `${h.host} (${h.reason})`).join('; ')}.</p>;
}
