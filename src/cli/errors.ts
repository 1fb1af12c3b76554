/**
 * How the CLI reports failure: one line `error: CODE: message` on stderr (or, for a command given --json, one line
 * of JSON `{"error":{"code","message",...}}` on stderr) and exit 1. Never a stack trace: an error nobody caught
 * is reported the same way, and a closed stdout (`corral events | head -1`) ends the command quietly.
 */
import { CliError } from './client.js';

/** An error's code worth showing (an API code, or a system one such as ECONNRESET; not Node's ERR_*), and its message. */
function codeAndMessage(e: unknown): { code: string | undefined; message: string } {
  if (e instanceof CliError) return { code: e.code, message: e.message };
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return { code: typeof code === 'string' && /^[A-Z_]+$/.test(code) && !code.startsWith('ERR_') ? code : undefined, message: e.message };
  }
  return { code: undefined, message: String(e) };
}

/** `error: CODE: message` for API errors, `error: message` for the rest. */
export function errorLine(e: unknown): string {
  const { code, message } = codeAndMessage(e);
  return code ? `error: ${code}: ${message}` : `error: ${message}`;
}

/**
 * The error as the API shapes one: `{"error":{"code","message",...details}}`. Errors of the CLI itself have a code
 * too: DAEMON_UNREACHABLE when the daemon cannot be reached, USAGE for a bad command line, CLI_ERROR otherwise.
 */
export function errorJson(e: unknown): { error: Record<string, unknown> } {
  if (e instanceof CliError) return { error: { code: e.code ?? e.localCode ?? 'CLI_ERROR', message: e.message, ...e.details } };
  const { code, message } = codeAndMessage(e);
  return { error: { code: code ?? 'CLI_ERROR', message } };
}

let json = false;

/** From now on, errors print as JSON (the command being run was given --json). */
export function setJsonErrors(on: boolean): void {
  json = on;
}

export function jsonErrors(): boolean {
  return json;
}

/** Print an error the way the command asked for (a line, or JSON), on stderr. */
export function reportError(e: unknown): void {
  const text = json ? JSON.stringify(errorJson(e)) : errorLine(e);
  try {
    process.stderr.write(`${text}\n`);
  } catch {
    // stderr is gone too: nothing more to say
  }
}

/** A write to a reader that has gone away (`| head`): the command has nothing left to do. */
function isClosedPipe(e: NodeJS.ErrnoException): boolean {
  return e.code === 'EPIPE' || e.code === 'ERR_STREAM_DESTROYED' || e.code === 'ECONNRESET';
}

const onStdoutError = (e: NodeJS.ErrnoException): void => {
  if (isClosedPipe(e)) process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  reportError(e);
  process.exit(1);
};
const onStderrError = (): void => {
  // nowhere left to report anything; stdout may still be fine
};
const onUncaught = (e: unknown): void => {
  reportError(e);
  process.exit(1);
};

/** The process-wide guards of a CLI run: closed pipes end quietly, stray errors print `error: ...`. */
export function installCliGuards(): void {
  process.stdout.on('error', onStdoutError);
  process.stderr.on('error', onStderrError);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
}

/** `corral daemon` runs the daemon in this process: it keeps Node's own handling (stack traces in its log). */
export function releaseCliGuards(): void {
  process.stdout.off('error', onStdoutError);
  process.stderr.off('error', onStderrError);
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
}
