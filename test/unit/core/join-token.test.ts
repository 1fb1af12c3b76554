/** Cluster join tokens: the text form round-trips, every malformed form is INVALID_JOIN_TOKEN and no message shows the secret. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { formatJoinToken, hashJoinSecret, joinSecretMatches, parseJoinToken, type JoinToken } from '../../../src/core/join-token.js';

const GOOD: JoinToken = {
  id: 'a1b2c3d4e5f60718',
  secret: 'Q1mV4y0_k-9ZrT2pWbXcYd3eFg5hHi6jJk7lLm8nNo0',
  caSha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
};
const TEXT = `corral1.${GOOD.id}.${GOOD.secret}.${GOOD.caSha256}`;

/** The call is refused with INVALID_JOIN_TOKEN (400) on `part`, its message matching `message` and holding no secret. */
function refused(fn: () => unknown, part: string, message: RegExp, secrets: string[] = [GOOD.secret]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'INVALID_JOIN_TOKEN');
    assert.equal(e.status, 400);
    assert.equal(e.details.part, part);
    assert.match(e.message, message);
    const shown = `${e.message} ${JSON.stringify(e.toJSON())}`;
    for (const s of secrets) assert.ok(!shown.includes(s), `the error shows the secret: ${shown}`);
    return true;
  });
}

test('a token round-trips through its text form, spaces around it dropped', () => {
  assert.equal(formatJoinToken(GOOD), TEXT);
  assert.deepEqual(parseJoinToken(TEXT), GOOD);
  assert.deepEqual(parseJoinToken(`  ${TEXT}\n`), GOOD);
});

test('text that is not a Corral join token, or has the wrong number of parts, is refused', () => {
  refused(() => parseJoinToken(42), 'token', /expected text of the form corral1\.<id>\.<secret>\.<ca-sha256>/);
  refused(() => parseJoinToken(''), 'prefix', /starts with "corral1\."/);
  refused(() => parseJoinToken(`corral2.${GOOD.id}.${GOOD.secret}.${GOOD.caSha256}`), 'prefix', /starts with "corral1\."/);
  refused(() => parseJoinToken('abcdef.0123456789abcdef'), 'prefix', /starts with "corral1\."/);
  refused(() => parseJoinToken(GOOD.secret), 'prefix', /starts with "corral1\."/);
  refused(() => parseJoinToken(`corral1.${GOOD.id}.${GOOD.secret}`), 'token', /has 3 dot-separated parts where .* has 4/);
  refused(() => parseJoinToken(`${TEXT}.extra`), 'token', /has 5 dot-separated parts/);
  refused(() => parseJoinToken('corral1'), 'token', /has 1 dot-separated parts/);
});

test('a bad id, secret or CA hash is refused naming the part, never showing it', () => {
  const withParts = (id: string, secret: string, ca: string): string => `corral1.${id}.${secret}.${ca}`;
  refused(() => parseJoinToken(withParts('a1b2c3', GOOD.secret, GOOD.caSha256)), 'id', /its id \(6 characters\) must be 8 to 64 lower-case letters and digits/);
  refused(() => parseJoinToken(withParts('A1B2C3D4E5', GOOD.secret, GOOD.caSha256)), 'id', /its id/);
  refused(() => parseJoinToken(withParts('a1b2-c3d4e5', GOOD.secret, GOOD.caSha256)), 'id', /its id/);
  // parts in the wrong order: the secret where the id goes is not shown either
  refused(() => parseJoinToken(withParts(GOOD.secret, GOOD.id, GOOD.caSha256)), 'id', /its id \(43 characters\)/);
  refused(() => parseJoinToken(withParts(GOOD.id, GOOD.secret.slice(1), GOOD.caSha256)), 'secret', /its secret must be 32 bytes in base64url/, [GOOD.secret.slice(1)]);
  refused(() => parseJoinToken(withParts(GOOD.id, `${GOOD.secret}A`, GOOD.caSha256)), 'secret', /its secret/, [`${GOOD.secret}A`]);
  const plus = `${GOOD.secret.slice(0, 10)}+${GOOD.secret.slice(11)}`;
  refused(() => parseJoinToken(withParts(GOOD.id, plus, GOOD.caSha256)), 'secret', /its secret/, [plus]);
  // 43 characters whose last one carries bits past the 32 bytes: not what base64url of 32 bytes gives
  const loose = `${'A'.repeat(42)}B`;
  refused(() => parseJoinToken(withParts(GOOD.id, loose, GOOD.caSha256)), 'secret', /its secret/, [loose]);
  refused(() => parseJoinToken(withParts(GOOD.id, GOOD.secret, GOOD.caSha256.toUpperCase())), 'caSha256', /its CA hash \(64 characters\) must be .* 64 lower-case hex digits/);
  refused(() => parseJoinToken(withParts(GOOD.id, GOOD.secret, GOOD.caSha256.slice(2))), 'caSha256', /its CA hash \(62 characters\)/);
  refused(() => parseJoinToken(withParts(GOOD.id, GOOD.secret, GOOD.caSha256.match(/../g)!.join(':'))), 'caSha256', /its CA hash/);
  refused(() => parseJoinToken(withParts(GOOD.id, GOOD.secret, GOOD.secret)), 'caSha256', /its CA hash \(43 characters\)/);
});

test('formatJoinToken checks the parts as parseJoinToken does', () => {
  refused(() => formatJoinToken({ ...GOOD, id: 'short' }), 'id', /its id/);
  refused(() => formatJoinToken({ ...GOOD, secret: 'x.y' }), 'secret', /its secret/, ['x.y']);
  refused(() => formatJoinToken({ ...GOOD, caSha256: '' }), 'caSha256', /its CA hash \(0 characters\)/);
});

test('the controller keeps the SHA-256 of a secret and matches a secret against it', () => {
  assert.equal(hashJoinSecret('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  const stored = hashJoinSecret(GOOD.secret);
  assert.match(stored, /^[0-9a-f]{64}$/);
  assert.equal(joinSecretMatches(GOOD.secret, stored), true);
  assert.equal(joinSecretMatches(`${GOOD.secret.slice(0, -1)}A`, stored), false);
  assert.equal(joinSecretMatches(GOOD.secret, stored.slice(2)), false);
  assert.equal(joinSecretMatches(GOOD.secret, 'not hex'), false);
});
