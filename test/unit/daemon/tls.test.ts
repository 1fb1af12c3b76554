/** The TCP API's TLS pair: made once (key 0600) with openssl, reused, and checked; a bad pair stops the daemon. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTlsPair, loadTlsPair } from '../../../src/daemon/tls.js';
import { runDaemon } from '../../../src/daemon/main.js';
import { CorralError } from '../../../src/core/errors.js';
import { testPair } from '../tls-pair.js';

const isConfig = (re: RegExp) => (e: unknown): boolean => e instanceof CorralError && e.code === 'INVALID_CONFIG' && re.test(e.message);

test('the first start makes a self-signed pair in tls/, key 0600; the next start reuses it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tls-'));
  try {
    const made = await ensureTlsPair(dir, {}, '127.0.0.1');
    assert.equal(made.made, true);
    assert.equal(made.certFile, join(dir, 'tls', 'server.crt'));
    assert.equal(statSync(made.keyFile).mode & 0o777, 0o600);
    assert.equal(statSync(join(dir, 'tls')).mode & 0o777, 0o700);
    // the fingerprint is the one openssl prints for the file
    const openssl = execFileSync('openssl', ['x509', '-in', made.certFile, '-noout', '-fingerprint', '-sha256'], { encoding: 'utf8' });
    assert.equal(openssl.trim().split('=')[1], made.fingerprint);
    const text = execFileSync('openssl', ['x509', '-in', made.certFile, '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, /IP Address:127\.0\.0\.1/);
    const again = await ensureTlsPair(dir, {}, '127.0.0.1');
    assert.equal(again.made, false);
    assert.equal(again.fingerprint, made.fingerprint);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a given pair is checked: both files, readable, PEM, the key the certificate\'s', async () => {
  const a = await testPair();
  const b = await testPair('other');
  assert.equal(loadTlsPair(a.certFile, a.keyFile).fingerprint, a.fingerprint);
  await assert.rejects(ensureTlsPair('/nonexistent', { cert: a.certFile }, 'h'), isConfig(/give both --tls-cert and --tls-key/));
  assert.throws(() => loadTlsPair(a.certFile, b.keyFile), isConfig(/is not the private key of/));
  assert.throws(() => loadTlsPair('/nonexistent/c.pem', a.keyFile), isConfig(/c\.pem cannot be read \(ENOENT\)/));
  const dir = mkdtempSync(join(tmpdir(), 'corral-tls-'));
  try {
    writeFileSync(join(dir, 'junk.pem'), 'not a certificate\n');
    assert.throws(() => loadTlsPair(join(dir, 'junk.pem'), a.keyFile), isConfig(/junk\.pem is not a PEM certificate/));
    assert.throws(() => loadTlsPair(a.certFile, join(dir, 'junk.pem')), isConfig(/junk\.pem is not an unencrypted PEM private key/));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('half a pair in the data dir is not silently replaced', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tls-'));
  try {
    const made = await ensureTlsPair(dir, {}, '127.0.0.1');
    rmSync(made.keyFile);
    await assert.rejects(ensureTlsPair(dir, {}, '127.0.0.1'), isConfig(/server\.key is missing while its pair is there/));
    assert.equal(readFileSync(made.certFile, 'utf8'), made.cert);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the daemon with a certificate that is not one refuses to start and listens on nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'corral-tls-'));
  try {
    const a = await testPair();
    writeFileSync(join(dir, 'junk.pem'), 'junk\n');
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as { port: number }).port;
    await new Promise<void>((r) => s.close(() => r()));
    await assert.rejects(runDaemon({ dataDir: dir, listen: `127.0.0.1:${port}`, tlsCert: join(dir, 'junk.pem'), tlsKey: a.keyFile }), isConfig(/is not a PEM certificate/));
    const refused = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.on('connect', () => { c.destroy(); resolve(false); });
      c.on('error', () => resolve(true));
    });
    assert.equal(refused, true);
    assert.equal(existsSync(join(dir, 'corral.sock')), false);
    assert.equal(existsSync(join(dir, 'corral.db')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
