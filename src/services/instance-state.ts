/** The one way an instance's state moves: checked against the table in core/state.ts, stored, then published. */
import { assertTransition, type InstanceState } from '../core/state.js';
import type { InstanceRow, Store } from '../store/store.js';
import type { EventBus } from './events.js';

/**
 * Move an instance to a new state: refused (INTERNAL, both states named) when the table does not allow it. The
 * stored state is the one moved from, whatever an older copy of the row says; `row` is updated in place.
 */
export function moveState(
  d: { store: Store; events: EventBus }, row: InstanceRow, to: InstanceState, reason: string,
  patch: Partial<InstanceRow> = {}, extra: Record<string, unknown> = {},
): void {
  const stored = d.store.getInstance(row.name);
  const from = stored && stored.uuid === row.uuid ? stored.state : row.state;
  assertTransition(from, to, row.name);
  Object.assign(row, patch, { state: to });
  d.store.updateInstance(row.uuid, { ...patch, state: to });
  if (from !== to) d.events.publish('instance.state', row.name, { from, to, reason, ...extra });
}
