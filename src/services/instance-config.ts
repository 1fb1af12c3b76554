/**
 * `corral set`: change a stopped instance's configuration, validated as a create is (src/core/spec-change.ts)
 * and by the services' own checks (CPU model, memory limit); the next start uses it.
 */
import { existsSync, copyFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';
import { applySpecChange, changedFields, type SpecChange } from '../core/spec-change.js';
import type { HostLimits } from '../core/spec.js';
import { canRun } from '../core/state.js';
import type { EventBus } from './events.js';
import type { InstanceService, InstanceView } from './instances.js';
import { OVMF_VARS, assertOvmf } from './runtime.js';

export class InstanceConfigService {
  constructor(private d: { instances: InstanceService; events: EventBus; host: HostLimits }) {}

  /** Returns the instance and the fields that changed (none: nothing is written, no event). */
  set(name: string, change: SpecChange): Promise<{ instance: InstanceView; changed: string[] }> {
    return this.d.instances.withLock(name, () => this.setLocked(name, change));
  }

  /** set() for a caller that already holds the instance's lock (a resize of a stopped instance). */
  async setLocked(name: string, change: SpecChange): Promise<{ instance: InstanceView; changed: string[] }> {
    const { instances } = this.d;
    const row = instances.rowOf(name);
    if (!canRun('set', row.state)) {
      throw new CorralError('INVALID_STATE', `instance "${name}" is ${row.state}: stop it to change its configuration (corral resize changes a running instance's vCPUs and memory)`, { state: row.state });
    }
    const spec = applySpecChange(row.spec, change, this.d.host);
    await instances.checkSpec(spec);
    const changed = changedFields(row.spec, spec);
    const efiVars = instances.paths(row).efiVars;
    if (spec.firmware === 'uefi' && !existsSync(efiVars)) {
      assertOvmf();
      copyFileSync(OVMF_VARS, efiVars);
    }
    if (changed.length === 0) return { instance: instances.view(row), changed };
    const updated = instances.updateSpec(name, spec);
    this.d.events.publish('instance.updated', name, { changed, live: false });
    return { instance: instances.view(updated), changed };
  }
}
