/** The CLI's own error type (client.ts re-exports it). */
/**
 * An error the CLI prints as `error: CODE: message` (or `error: message` without a code) and exits 1. `code` is the
 * API's; `localCode` names an error of the CLI itself in JSON output only (the text line shows no code for it).
 */
export class CliError extends Error {
  constructor(message: string, readonly code?: string, readonly details: Record<string, unknown> = {}, readonly localCode?: string) {
    super(message);
    this.name = 'CliError';
  }
}
