/** Self-signed TLS pairs for tests, made once per process the way the daemon makes its own (openssl). */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTlsPair, type TlsPair } from '../../src/daemon/tls.js';

const made = new Map<string, Promise<TlsPair>>();

/** A pair for 127.0.0.1 and localhost; another `name` gives another pair. */
export function testPair(name = 'a'): Promise<TlsPair> {
  let p = made.get(name);
  if (!p) {
    p = ensureTlsPair(mkdtempSync(join(tmpdir(), `corral-tls-${name}-`)), {}, '127.0.0.1');
    made.set(name, p);
  }
  return p;
}
