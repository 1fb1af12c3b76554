/**
 * Rollback and cleanup steps that fail are not thrown (the error being unwound, or the operation that
 * succeeded, matters more) but never pass in silence: a warning names what was left behind.
 */
export interface WarnLog { warn(o: object, m?: string): void }

/** A `.catch()` handler for a rollback step: logs `what` as left behind, with the context and the step's error. */
export function leftBehind(log: WarnLog, what: string, context: Record<string, unknown> = {}): (e: unknown) => void {
  return (e) => log.warn({ ...context, leftBehind: what, err: e instanceof Error ? e.message : String(e) }, `could not undo: ${what} was left behind`);
}
