import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { L2_TABLE, l2FilterRuleset, tapRules, type TapBinding } from '../../../src/network/l2-filter.js';
import { assertGolden } from '../golden.js';
import { FIXTURES, SKIP_NO_NFT_CHECK } from '../fixtures.js';

const dir = join(FIXTURES, 'network');
const web0: TapBinding = { ifname: 'ct0b7c9a52n0', mac: '52:54:00:12:34:56', ip: '10.10.0.10', owner: 'web1/net0' };
const web1: TapBinding = { ifname: 'ct0b7c9a52n1', mac: '52:54:00:ab:cd:ef', ip: '10.20.0.10', owner: 'web1/net1' };
const db0: TapBinding = { ifname: 'ct5e1f0c33n0', mac: '52:54:00:65:43:21', ip: '10.10.0.11', owner: 'db1/net0' };

test('layer-2 filter golden: one chain per tap, jumped to from prerouting by the tap\'s name (sorted by tap)', () => {
  assertGolden(join(dir, 'l2-taps.nft'), l2FilterRuleset([db0, web1, web0]));
});

test('layer-2 filter golden: no tap removes the table', () => {
  const got = l2FilterRuleset([]);
  assertGolden(join(dir, 'l2-empty.nft'), got);
  assert.ok(!got.includes('{'));
  assert.deepEqual(got.split('\n').slice(1, 3), [`table bridge ${L2_TABLE}`, `delete table bridge ${L2_TABLE}`]);
});

test('a tap sends only as its MAC and address: DHCP requests from 0.0.0.0, no DHCP server replies, nothing else', () => {
  const rules = tapRules(web0);
  assert.equal(rules[0], 'ether saddr != 52:54:00:12:34:56 drop', 'the MAC first, for every ethertype');
  assert.equal(rules.at(-1), 'drop', 'what is not allowed is dropped: IPv6 (router advertisements), VLAN tags, other ethertypes');
  const accepts = rules.filter((r) => r.endsWith(' accept'));
  assert.equal(accepts.length, 3);
  assert.match(accepts[0]!, /^arp htype 1 arp ptype 0x0800 arp hlen 6 arp plen 4 arp saddr ether 52:54:00:12:34:56 arp saddr ip \{ 0\.0\.0\.0, 10\.10\.0\.10 \} accept$/);
  assert.equal(accepts[1], 'ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept');
  assert.equal(accepts[2], 'ip saddr 10.10.0.10 accept');
  // a guest never answers DHCP, not even from its own address: dropped before its address is accepted
  assert.ok(rules.indexOf('ip protocol udp udp sport 67 drop') < rules.indexOf(accepts[2]!));
  assert.doesNotMatch(l2FilterRuleset([web0]), /policy drop/);
});

test('nothing but checked names and addresses reaches the ruleset', () => {
  assert.throws(() => l2FilterRuleset([{ ...web0, ifname: 'ct0" accept; flush ruleset; "' }]), /not one Corral makes/);
  assert.throws(() => l2FilterRuleset([{ ...web0, ip: '10.10.0.10 accept' }]), /invalid MAC or address/);
  assert.throws(() => l2FilterRuleset([{ ...web0, ip: '10.10.0.010' }]), /invalid MAC or address/);
  assert.throws(() => l2FilterRuleset([{ ...web0, mac: '52:54:00:12:34:56 }' }]), /invalid MAC or address/);
  assert.throws(() => l2FilterRuleset([{ ...web0, mac: '01:00:5e:00:00:01' }]), /invalid MAC or address/);
  assert.throws(() => l2FilterRuleset([web0, { ...db0, ifname: web0.ifname }]), /bound twice/);
  assert.match(l2FilterRuleset([{ ...web0, owner: 'web1/net0\nflush ruleset' }]), /# web1\/net0\?flush\?ruleset: /);
});

test('nft accepts the layer-2 filter goldens (nft -c: checked by the kernel, nothing applied)', { skip: SKIP_NO_NFT_CHECK }, () => {
  for (const name of ['l2-taps', 'l2-empty']) execFileSync('nft', ['-c', '-f', join(dir, `${name}.nft`)], { stdio: 'pipe' });
});
