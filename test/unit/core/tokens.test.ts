/** Roles in order, token names, and a token's expiry as a user writes it (a duration or a date, always in the future). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import { parseExpiry, roleAllows, validateRole, validateTokenName } from '../../../src/core/tokens.js';

const NOW = new Date('2026-11-30T13:00:00.000Z');

function refused(fn: () => unknown, field: string, message: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CorralError, String(e));
    assert.equal(e.code, 'INVALID_SPEC');
    assert.equal(e.details.field, field);
    assert.match(e.message, message);
    return true;
  });
}

test('roles are ordered viewer < operator < admin', () => {
  assert.equal(roleAllows('admin', 'operator'), true);
  assert.equal(roleAllows('operator', 'operator'), true);
  assert.equal(roleAllows('operator', 'viewer'), true);
  assert.equal(roleAllows('viewer', 'operator'), false);
  assert.equal(roleAllows('operator', 'admin'), false);
  assert.equal(validateRole('role', 'viewer'), 'viewer');
  refused(() => validateRole('role', 'root'), 'role', /^role: "root" is not a role: use viewer .*, operator .* or admin/);
  refused(() => validateRole('role', 3), 'role', /^role: 3 is not a role/);
});

test('a token name is a DNS label and not one the audit log uses for callers without a token', () => {
  assert.equal(validateTokenName('name', 'ci-deploy'), 'ci-deploy');
  refused(() => validateTokenName('name', 'CI'), 'name', /not a DNS label/);
  refused(() => validateTokenName('name', 'token-file'), 'name', /"token-file" is reserved/);
  refused(() => validateTokenName('name', 'unix-socket'), 'name', /reserved/);
});

test('an expiry is a duration from now or a date (its start, UTC) or a date and time with a zone', () => {
  assert.equal(parseExpiry('expires', '90m', NOW), '2026-11-30T14:30:00.000Z');
  assert.equal(parseExpiry('expires', '12h', NOW), '2026-12-01T01:00:00.000Z');
  assert.equal(parseExpiry('expires', '30d', NOW), '2026-12-30T13:00:00.000Z');
  assert.equal(parseExpiry('expires', '2w', NOW), '2026-12-14T13:00:00.000Z');
  assert.equal(parseExpiry('expires', '2026-12-31', NOW), '2026-12-31T00:00:00.000Z');
  assert.equal(parseExpiry('expires', '2026-12-31T18:00:00Z', NOW), '2026-12-31T18:00:00.000Z');
  assert.equal(parseExpiry('expires', '2026-12-31T18:00+02:00', NOW), '2026-12-31T16:00:00.000Z');
});

test('an expiry that is not one, has no zone, is not on the calendar or is not in the future is INVALID_SPEC on its field', () => {
  refused(() => parseExpiry('expires', 'tomorrow', NOW), 'expires', /^expires: "tomorrow" is neither a duration nor a date: give a duration \(90m, 12h, 30d, 2w\)/);
  refused(() => parseExpiry('expires', '30', NOW), 'expires', /neither a duration nor a date/);
  refused(() => parseExpiry('expires', '0d', NOW), 'expires', /no time at all/);
  refused(() => parseExpiry('expires', '2026-12-31T18:00:00', NOW), 'expires', /has no time zone: end it with Z/);
  refused(() => parseExpiry('expires', '2027-02-31', NOW), 'expires', /not a real date/);
  refused(() => parseExpiry('expires', '2026-13-01', NOW), 'expires', /not a real date/);
  refused(() => parseExpiry('expires', '2026-11-30', NOW), 'expires', /^expires: 2026-11-30T00:00:00\.000Z is not in the future$/);
  refused(() => parseExpiry('expires', '999999999w', NOW), 'expires', /more than 100 years away/);
  refused(() => parseExpiry('expires', '', NOW), 'expires', /expected a duration or a date/);
  refused(() => parseExpiry('expires', 30, NOW), 'expires', /expected a duration or a date/);
});
