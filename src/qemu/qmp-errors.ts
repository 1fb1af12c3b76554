/**
 * Typed errors of the QMP client (src/qemu/qmp.ts), one class per way a QMP exchange can fail, in the
 * manner of Incus's drivers/qmp/errors.go. Callers tell them apart with `instanceof`.
 */

import { CorralError } from '../core/errors.js';

/** Base class of every error the QMP client raises. */
export class QmpError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'QmpError';
  }
}

/** QEMU answered a command with `{"error": {"class", "desc"}}`. */
export class QmpCommandError extends QmpError {
  /** QEMU's error class, e.g. "GenericError", "CommandNotFound", "DeviceNotFound". */
  readonly qmpClass: string;
  /** QEMU's human-readable description. */
  readonly desc: string;
  /** The command that failed. */
  readonly command: string;

  constructor(command: string, qmpClass: string, desc: string) {
    super(`QMP command "${command}" failed: ${qmpClass}: ${desc}`);
    this.name = 'QmpCommandError';
    this.command = command;
    this.qmpClass = qmpClass;
    this.desc = desc;
  }
}

/**
 * No answer within the time limit. For `execute()` the connection stays usable and a late reply is
 * dropped; during `connect()` the command is "connect", "greeting" or "qmp_capabilities".
 */
export class QmpTimeoutError extends QmpError {
  readonly command: string;
  readonly timeoutMs: number;

  constructor(command: string, timeoutMs: number, options?: ErrorOptions) {
    const what = command === 'connect' || command === 'greeting' ? command : `command "${command}"`;
    super(`QMP ${what} timed out after ${timeoutMs} ms`, options);
    this.name = 'QmpTimeoutError';
    this.command = command;
    this.timeoutMs = timeoutMs;
  }
}

/**
 * The monitor connection is gone (or could not be opened): QEMU exited, the socket was closed by either
 * side, or a socket error occurred. `command` names the command that was waiting, if any.
 */
export class QmpDisconnectedError extends QmpError {
  readonly command: string | undefined;

  constructor(message: string, options?: ErrorOptions & { command?: string }) {
    super(message, options);
    this.name = 'QmpDisconnectedError';
    this.command = options?.command;
  }
}

/**
 * The one place a QMP failure becomes a coded Corral error: a disconnect is VM_GONE (QEMU went away during
 * the call), a timeout is TIMEOUT, QEMU's refusal is QEMU_FAILED with its class and description. Anything
 * else is not a QMP failure and is passed through unchanged.
 */
export function qmpToCorral(e: unknown, command: string): unknown {
  if (e instanceof QmpDisconnectedError) {
    return new CorralError('VM_GONE', `QEMU went away during ${command}: ${e.message}`, { command });
  }
  if (e instanceof QmpTimeoutError) {
    return new CorralError('TIMEOUT', `QEMU did not answer ${command} within ${e.timeoutMs / 1000}s`, { command });
  }
  if (e instanceof QmpCommandError) {
    return new CorralError('QEMU_FAILED', `QEMU refused ${command}: ${e.desc}`, { command, class: e.qmpClass });
  }
  return e;
}
