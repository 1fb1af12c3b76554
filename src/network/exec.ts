/**
 * Host commands for the network layer, through the one command runner (src/host/exec.ts): argv arrays,
 * never a shell, a plain environment, 30 s unless told otherwise; a failure is NETWORK_FAILED naming the
 * command line and carrying the tool's own stderr, a missing tool MISSING_TOOL, a hung one TIMEOUT.
 */
import { CorralError } from '../core/errors.js';
import { commandLine, plainEnv, run as runCommand, stderrLine, type RunResult } from '../host/exec.js';

export { commandLine, stderrLine, type RunResult };
export const ENV = plainEnv;

export function run(bin: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return runCommand(bin, args, { timeoutMs: opts.timeoutMs ?? 30_000, input: opts.input, code: 'NETWORK_FAILED' });
}

/** `ip ARGS`. */
export function ip(args: string[]): Promise<RunResult> {
  return run('ip', args);
}

/** `ip -j ARGS` parsed; an empty answer is []. */
export async function ipJson<T = unknown>(args: string[]): Promise<T[]> {
  const { stdout } = await ip(['-j', ...args]);
  const text = stdout.trim();
  if (text === '') return [];
  try {
    const v: unknown = JSON.parse(text);
    return Array.isArray(v) ? (v as T[]) : [];
  } catch {
    throw new CorralError('NETWORK_FAILED', `${commandLine('ip', ['-j', ...args])} printed something that is not JSON`, { command: commandLine('ip', ['-j', ...args]) });
  }
}
