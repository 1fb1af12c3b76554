/**
 * `corral console NAME`: the serial console over the daemon's websocket (binary frames both ways).
 * A TTY goes raw and detaches on Ctrl-] (0x1d); piped stdin is forwarded, then guest output is printed
 * until it has been quiet for --linger ms (at most 15 s after stdin ends). When stdout is not a terminal, the
 * guest's terminal queries (ESC[6n and the like) are left out of what is printed.
 */
import WebSocket from 'ws';
import type { Command } from 'commander';
import { apiError, CliError, readAll, type ApiClient } from './client.js';
import { wholeNumber } from './instances.js';
import { stripTerminalQueries, TerminalQueryFilter } from './terminal-queries.js';

const DETACH = 0x1d; // Ctrl-]
const MAX_LINGER_AFTER_EOF_MS = 15_000;

export interface AttachOptions { linger: number }

function toBuffer(d: WebSocket.RawData): Buffer {
  return Array.isArray(d) ? Buffer.concat(d) : Buffer.isBuffer(d) ? d : Buffer.from(d);
}

/** Attach to NAME's console until detach, EOF + quiet, or the console closes. Throws CliError on failure. */
export function attachConsole(client: ApiClient, name: string, opts: AttachOptions): Promise<void> {
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  const target = client.wsTarget(`/v1/instances/${encodeURIComponent(name)}/console`);
  const ws = new WebSocket(target.url, {
    headers: target.headers,
    perMessageDeflate: false,
    ...(target.createConnection ? { createConnection: target.createConnection as unknown as WebSocket.ClientOptions['createConnection'] } : {}),
  });

  // Nobody is there to answer a terminal query when stdout is a file or a pipe.
  const queries = process.stdout.isTTY === true ? null : new TerminalQueryFilter();
  const print = (b: Buffer): void => {
    const out = queries ? queries.push(b) : b;
    if (out.length > 0) process.stdout.write(out);
  };

  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let rawMode = false;
    let quiet: NodeJS.Timeout | undefined;
    let deadline: NodeJS.Timeout | undefined;
    let lingering = false;

    const restore = (): void => {
      if (rawMode) {
        try {
          stdin.setRawMode(false);
        } catch {
          // the terminal is gone
        }
        rawMode = false;
      }
    };
    process.on('exit', restore);

    const finish = (err?: CliError, note?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(quiet);
      clearTimeout(deadline);
      restore();
      process.off('exit', restore);
      const rest = queries?.flush();
      if (rest && rest.length > 0) process.stdout.write(rest);
      stdin.off('data', onInput);
      stdin.off('end', onEof);
      stdin.pause();
      if (!tty) stdin.destroy();
      if (note && tty) process.stderr.write(`\r\n${note}\r\n`);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
        ws.close(1000, 'client detached');
        setTimeout(() => ws.terminate(), 1000).unref();
      }
      if (err) reject(err);
      else resolve();
    };

    const armQuiet = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(() => finish(), opts.linger);
    };

    function onInput(chunk: Buffer | string): void {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      const i = tty ? buf.indexOf(DETACH) : -1;
      if (i >= 0) {
        if (i > 0) ws.send(buf.subarray(0, i), { binary: true });
        finish(undefined, `Detached from ${name}'s console.`);
        return;
      }
      if (buf.length > 0) ws.send(buf, { binary: true });
    }

    function onEof(): void {
      if (tty) return;
      lingering = true;
      armQuiet();
      deadline = setTimeout(() => finish(), MAX_LINGER_AFTER_EOF_MS);
    }

    ws.on('unexpected-response', (req, res) => {
      readAll(res)
        .then((buf) => finish(apiError(res, buf)))
        .catch(() => finish(new CliError(`the daemon refused the console (HTTP ${res.statusCode ?? '?'})`)))
        .finally(() => req.destroy());
    });

    ws.on('error', (e: NodeJS.ErrnoException) => {
      finish(e.code ? client.connectError(e) : new CliError(`console connection failed: ${e.message}`));
    });

    ws.on('open', () => {
      if (tty) {
        stdin.setRawMode(true);
        rawMode = true;
        process.stderr.write(`Connected to ${name}'s console; detach with Ctrl-]\r\n`);
      }
      stdin.on('data', onInput);
      stdin.on('end', onEof);
      stdin.resume();
    });

    ws.on('message', (data) => {
      if (settled) return;
      print(toBuffer(data));
      if (lingering) armQuiet();
    });

    ws.on('close', (code, reason) => {
      const why = reason.toString('utf8');
      if (code === 1000 || code === 1005) finish(undefined, `The console of ${name} closed${why ? ` (${why})` : ''}.`);
      else if (code === 1006) finish(new CliError(`lost the connection to the daemon (console of ${name})`));
      else finish(new CliError(`console closed: ${why || `websocket code ${code}`}`));
    });
  });
}

export function registerConsoleCommands(program: Command, client: () => ApiClient): void {
  program
    .command('console')
    .description("attach to an instance's serial console (detach with Ctrl-])")
    .argument('<name>', 'instance name')
    .option('--log', 'print what the guest has written to the console so far, then exit (terminal queries left out unless stdout is a terminal)')
    .option('--linger <ms>', 'with piped stdin: after it ends, wait until the guest is quiet this long', wholeNumber, 1500)
    .action(async (name: string, o: { log?: boolean; linger: number }) => {
      if (o.log) {
        const buf = await client().bytes('GET', `/v1/instances/${encodeURIComponent(name)}/console/log`);
        process.stdout.write(process.stdout.isTTY === true ? buf : stripTerminalQueries(buf));
        return;
      }
      await attachConsole(client(), name, { linger: o.linger });
    });
}
