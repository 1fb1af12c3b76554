/** `corral tls fingerprint`: the SHA-256 fingerprint of the TCP API's certificate, read on the daemon's host, to pin. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { dataDirFromEnv, dataPaths } from '../core/paths.js';
import { CliError } from './client-error.js';
import { printJson } from './format.js';

export function certificateFingerprint(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(code === 'ENOENT'
      ? `${file} does not exist: the daemon makes it at its first start with --listen (or give the certificate with --cert)`
      : `${file} cannot be read (${code ?? (e as Error).message})`);
  }
  try {
    return new X509Certificate(pem).fingerprint256;
  } catch (e) {
    throw new CliError(`${file} is not a PEM certificate (${(e as Error).message})`);
  }
}

export function registerTlsCommands(program: Command): void {
  const tls = program.command('tls').description('the TLS certificate of the daemon\'s TCP API');
  tls
    .command('fingerprint')
    .description('print the SHA-256 fingerprint of the TCP API\'s certificate (for CORRAL_TLS_FINGERPRINT on clients)')
    .option('--cert <file>', 'the certificate (default: $CORRAL_DATA_DIR/tls/server.crt, the daemon\'s own)')
    .option('--json', 'print JSON')
    .action((o: { cert?: string; json?: boolean }) => {
      const file = o.cert ?? dataPaths(dataDirFromEnv()).tls.cert;
      const fingerprint = certificateFingerprint(file);
      if (o.json) printJson({ certificate: file, fingerprint });
      else process.stdout.write(`${fingerprint}\n`);
    });
}
