import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { guestFenceRuleset, GUEST_TABLE } from '../../../src/network/guest-fence.js';
import { assertGolden } from '../golden.js';
import { FIXTURES, SKIP_NO_NFT_CHECK } from '../fixtures.js';

const file = join(FIXTURES, 'network', 'guest-fence.nft');

test('guest fence golden: QEMU\'s group may not open connections to the host\'s addresses nor to link-local ones', () => {
  assertGolden(file, guestFenceRuleset(995));
});

test('guest fence: every rule concerns QEMU\'s group and new connections only; the table is replaced whole', () => {
  const text = guestFenceRuleset(4242);
  const rules = text.split('\n').filter((l) => /\b(accept|reject|drop)$/.test(l.trim()));
  assert.ok(rules.length >= 3);
  for (const r of rules) assert.match(r, /^\t\tmeta skgid 4242 ct state new /, r);
  // the fence itself: local addresses refused, and only DNS to loopback let through before it
  const fenced = rules.findIndex((r) => / fib daddr type local reject$/.test(r));
  assert.ok(fenced >= 0);
  for (const r of rules.slice(0, fenced)) assert.match(r, /ip daddr 127\.0\.0\.0\/8 (udp|tcp) dport 53 accept$/);
  assert.ok(rules.some((r) => r.includes('ip daddr 169.254.0.0/16 reject')));
  assert.deepEqual(text.split('\n').slice(1, 4), [`table inet ${GUEST_TABLE}`, `delete table inet ${GUEST_TABLE}`, `table inet ${GUEST_TABLE} {`]);
  assert.doesNotMatch(text, /policy drop/);
});

test('guest fence: no rule without a real group id (root\'s group would fence the daemon itself)', () => {
  for (const bad of [0, -1, 1.5, Number.NaN]) assert.throws(() => guestFenceRuleset(bad), /not a positive integer/);
});

test('nft accepts the guest fence (nft -c: checked by the kernel, nothing applied)', { skip: SKIP_NO_NFT_CHECK }, () => {
  execFileSync('nft', ['-c', '-f', file], { stdio: 'pipe' });
});
