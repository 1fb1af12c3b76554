/**
 * An instance's lifecycle buttons: those its state allows are enabled. Stop, restart, kill and delete ask first.
 * Each answer (the instance as the API now shows it) goes into the live list at once; a refusal is shown with
 * the API's own code and message.
 */
import { useState } from 'preact/hooks';
import { api, ApiError, enc } from '../api';
import { live } from '../live';
import type { Instance, InstanceState } from '../types';
import { ask } from './confirm';
import { notify } from './notice';

export type Action = 'start' | 'stop' | 'restart' | 'pause' | 'resume' | 'kill' | 'delete';

const ALLOWED: Record<Action, readonly InstanceState[]> = {
  start: ['stopped', 'crashed', 'error'],
  stop: ['running', 'paused'],
  restart: ['running'],
  pause: ['running'],
  resume: ['paused'],
  kill: ['running', 'paused', 'starting', 'stopping'],
  delete: ['stopped', 'crashed', 'error', 'running', 'paused'],
};

const ASK: Partial<Record<Action, (name: string, state: InstanceState) => string>> = {
  stop: (n) => `Power off "${n}"? The guest gets the ACPI power button; QEMU is killed if it has not powered off after 30 seconds.`,
  restart: (n) => `Restart "${n}"? It is powered off (as Stop does) and started again with a new QEMU.`,
  kill: (n) => `Kill the QEMU of "${n}" now? The guest loses whatever it had not written to its disks.`,
  delete: (n, s) => `Delete "${n}" with its root disk and runtime files?${s === 'running' || s === 'paused' ? ' It is running: its QEMU is killed first.' : ''} This cannot be undone.`,
};

export const allowed = (a: Action, s: InstanceState): boolean => ALLOWED[a].includes(s);

/** Run an action (asking first when it stops or removes something); true when it was done. */
export async function runAction(a: Action, inst: Pick<Instance, 'name' | 'state'>): Promise<boolean> {
  const q = ASK[a];
  if (q && !(await ask(`${a[0]!.toUpperCase()}${a.slice(1)} ${inst.name}`, q(inst.name, inst.state), a[0]!.toUpperCase() + a.slice(1)))) return false;
  const base = `/v1/instances/${enc(inst.name)}`;
  try {
    if (a === 'delete') {
      const force = inst.state === 'running' || inst.state === 'paused';
      await api('DELETE', `${base}${force ? '?force=true' : ''}`);
      live().instances.delete(inst.name);
      notify(`deleted ${inst.name}`);
    } else {
      const view = await api<Instance & { killed?: boolean }>('POST', `${base}/${a}`, {});
      live().put(view);
      notify(`${inst.name}: ${view.state}${view.killed ? ' (killed: the guest did not power off in time)' : ''}`);
    }
    return true;
  } catch (e) {
    notify(e instanceof ApiError ? `${inst.name}: ${e.code}: ${e.message}` : `${inst.name}: ${(e as Error).message}`, 'error');
    return false;
  }
}

export function Actions(p: { inst: Pick<Instance, 'name' | 'state'>; only?: readonly Action[]; onDone?: (a: Action) => void }) {
  const [busy, setBusy] = useState<Action | null>(null);
  const list = p.only ?? (['start', 'stop', 'restart', 'pause', 'resume', 'kill', 'delete'] as const);
  return (
    <div class="actions">
      {list.map((a) => (
        <button
          key={a}
          type="button"
          class={a === 'delete' || a === 'kill' ? 'danger small' : 'small'}
          disabled={busy !== null || !allowed(a, p.inst.state)}
          aria-label={`${a} ${p.inst.name}`}
          onClick={async () => {
            setBusy(a);
            try {
              if (await runAction(a, p.inst)) p.onDone?.(a);
            } finally {
              setBusy(null);
            }
          }}
        >
          {busy === a ? '…' : a}
        </button>
      ))}
    </div>
  );
}
