/** The CLI talks TLS to the TCP API and sends its token only to a daemon whose certificate it trusts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, startFakeApi } from './fake-api.js';
import { testPair } from '../tls-pair.js';
import { normaliseFingerprint } from '../../../src/cli/tls-trust.js';

test('the pinned fingerprint is accepted with or without colons, in either case', async () => {
  const { fingerprint } = await testPair();
  assert.equal(normaliseFingerprint(fingerprint.replace(/:/g, '').toLowerCase()), fingerprint);
  assert.equal(normaliseFingerprint(`sha256:${fingerprint}`), fingerprint);
  assert.throws(() => normaliseFingerprint('AB:CD'), /not a SHA-256 fingerprint/);
});

test('CORRAL_URL over TLS: pinned, CA-verified, refused when untrusted, and plain http is refused', async () => {
  const pair = await testPair();
  const other = await testPair('other');
  const tcp = await startFakeApi({ tcpToken: 's3cret', tls: pair });
  try {
    const url = `https://127.0.0.1:${tcp.port}`;
    const env = { CORRAL_DATA_DIR: tcp.dir, CORRAL_URL: url, CORRAL_TOKEN: 's3cret' };

    let r = await runCli(['list', '--json'], { ...env, CORRAL_TLS_CA: pair.certFile });
    assert.equal(r.code, 0, r.stderr);

    // another certificate pinned, or none trusted: the request, and so the token, never reaches the server
    const before = tcp.requests.length;
    r = await runCli(['list'], { ...env, CORRAL_TLS_FINGERPRINT: other.fingerprint });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: cannot trust the corral daemon at https:\/\/127\.0\.0\.1:\d+: it presented another certificate than the one pinned \(the daemon's certificate has fingerprint /);
    r = await runCli(['list'], { ...env, CORRAL_TLS_CA: other.certFile });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot trust the corral daemon .*a certificate that CORRAL_TLS_CA \(.*server\.crt\) does not vouch for \(self-signed certificate\)/);
    r = await runCli(['list'], env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot trust the corral daemon .*a certificate the system does not trust.*set CORRAL_TLS_FINGERPRINT/);
    r = await runCli(['console', 'web1'], { ...env, CORRAL_TLS_FINGERPRINT: other.fingerprint }, '');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot trust the corral daemon/);
    assert.equal(tcp.requests.length, before);

    r = await runCli(['list'], { ...env, CORRAL_URL: `http://127.0.0.1:${tcp.port}`, CORRAL_TLS_FINGERPRINT: pair.fingerprint });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /CORRAL_URL must start with https:\/\/: the daemon serves TCP over TLS only/);
  } finally {
    await tcp.close();
  }
});

test('corral tls fingerprint prints the certificate\'s SHA-256 fingerprint', async () => {
  const pair = await testPair();
  const r = await runCli(['tls', 'fingerprint', '--cert', pair.certFile], {});
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `${pair.fingerprint}\n`);
  const missing = await runCli(['tls', 'fingerprint'], { CORRAL_DATA_DIR: '/nonexistent-corral' });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /server\.crt does not exist: the daemon makes it at its first start with --listen/);
});
