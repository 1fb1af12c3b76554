/**
 * The instance state machine: one table says which operation may run in which state,
 * and which observed transitions (from QMP events and process exits) are legal.
 */
import { CorralError } from './errors.js';

export const STATES = ['stopped', 'starting', 'running', 'paused', 'stopping', 'crashed', 'error'] as const;
export type InstanceState = (typeof STATES)[number];

export const OPERATIONS = ['start', 'stop', 'restart', 'pause', 'resume', 'kill', 'delete', 'console', 'set'] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Which states each user operation may begin from. */
const ALLOWED: Record<Operation, readonly InstanceState[]> = {
  start: ['stopped', 'crashed', 'error'],
  stop: ['running', 'paused', 'starting'],
  restart: ['running', 'paused'],
  pause: ['running'],
  resume: ['paused'],
  /** error: the QEMU may be alive with its monitor silent; kill ends it */
  kill: ['running', 'paused', 'starting', 'stopping', 'error'],
  delete: ['stopped', 'crashed', 'error'],
  console: ['running', 'paused', 'starting', 'stopping'],
  /** change the stored configuration (a running instance changes vCPUs and memory with resize) */
  set: ['stopped', 'crashed', 'error'],
};

/** Every transition the instance may make, whoever causes it. */
const TRANSITIONS: Record<InstanceState, readonly InstanceState[]> = {
  stopped: ['starting'],
  starting: ['running', 'paused', 'stopped', 'crashed', 'error', 'stopping'],
  running: ['paused', 'stopping', 'stopped', 'crashed', 'error'],
  paused: ['running', 'stopping', 'stopped', 'crashed', 'error'],
  stopping: ['stopped', 'crashed', 'error', 'running', 'paused'],
  crashed: ['starting', 'stopped'],
  /** error: a live QEMU whose monitor did not answer at adoption; a later adoption that reaches it moves on */
  error: ['starting', 'stopped', 'running', 'paused'],
};

export function canRun(op: Operation, state: InstanceState): boolean {
  return ALLOWED[op].includes(state);
}

/** Throws INVALID_STATE naming the current state when `op` may not run now. */
export function assertCanRun(op: Operation, state: InstanceState, name: string): void {
  if (!canRun(op, state)) {
    throw new CorralError('INVALID_STATE', `cannot ${op} instance "${name}": it is ${state} (allowed from: ${ALLOWED[op].join(', ')})`, {
      state,
      operation: op,
    });
  }
}

export function validTransition(from: InstanceState, to: InstanceState): boolean {
  return from === to || TRANSITIONS[from].includes(to);
}

/** Throws INTERNAL naming both states when the table does not allow from -> to (a bug, never a user's error). */
export function assertTransition(from: InstanceState, to: InstanceState, name: string): void {
  if (!validTransition(from, to)) {
    throw new CorralError('INTERNAL', `instance "${name}": illegal state transition from ${from} to ${to}`, { from, to });
  }
}

/** The states in which an instance holds its resources (a QEMU runs, or is being started or stopped). */
export const ACTIVE_STATES: readonly InstanceState[] = ['starting', 'running', 'paused', 'stopping'];

export function isActive(state: InstanceState): boolean {
  return ACTIVE_STATES.includes(state);
}
