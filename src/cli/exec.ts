/**
 * `corral exec NAME [--stdin] [--timeout S] [--json] -- CMD ARGS...`: run a command in a running guest through its
 * guest agent (POST /v1/instances/NAME/exec), as `incus exec` does: its stdout and stderr come out as the guest
 * wrote them, and the CLI exits with the command's exit code (128 + N for a signal N), with --json too.
 */
import type { Command } from 'commander';
import type { ExecReply } from '../api/schemas-guest.js';
import type { ApiClient } from './client.js';
import { printJson } from './format.js';
import { wholeNumber } from './instances.js';

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function write(stream: NodeJS.WriteStream, data: Buffer): Promise<void> {
  return data.length === 0 ? Promise.resolve() : new Promise((resolve) => stream.write(data, () => resolve()));
}

/** The exit status of the CLI for a command's exit code (a shell keeps 8 bits). */
export function exitStatusOf(code: number): number {
  return code >= 0 && code <= 255 ? code : 255;
}

export function registerExecCommand(program: Command, client: () => ApiClient): void {
  program
    .command('exec')
    .description('run a command in a running guest through its guest agent; exits with the command\'s exit code')
    .argument('<name>', 'instance name')
    .argument('<command...>', 'the program and its arguments, after --: corral exec web1 -- sh -c \'uname -a\'')
    .option('--stdin', 'send what this command reads on its stdin to the guest command\'s stdin (read to its end first)')
    .option('--timeout <seconds>', 'stop waiting after this many seconds (TIMEOUT; the command may go on in the guest); default 300', wholeNumber)
    .option('--json', 'print {exitCode, signal, stdout, stderr, ...} as JSON (stdout and stderr as UTF-8 text)')
    .action(async (name: string, command: string[], o: { stdin?: boolean; timeout?: number; json?: boolean }) => {
      const body: Record<string, unknown> = { command, encoding: o.json ? 'utf8' : 'base64' };
      if (o.stdin) body.stdin = (await readStdin()).toString(o.json ? 'utf8' : 'base64');
      if (o.timeout !== undefined) body.timeout = o.timeout;
      const r = await client().call<ExecReply>('POST', `/v1/instances/${encodeURIComponent(name)}/exec`, body);
      if (o.json) {
        printJson(r);
      } else {
        await write(process.stdout, Buffer.from(r.stdout, 'base64'));
        await write(process.stderr, Buffer.from(r.stderr, 'base64'));
        const cut = [r.stdoutTruncated ? 'stdout' : '', r.stderrTruncated ? 'stderr' : ''].filter(Boolean);
        if (cut.length > 0) process.stderr.write(`corral: the guest agent kept only the first 16 MiB of the command's ${cut.join(' and ')}\n`);
      }
      process.exitCode = exitStatusOf(r.exitCode);
    });
}
