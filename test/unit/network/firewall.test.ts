import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { validateNetwork, type NetworkRecord } from '../../../src/core/networks.js';
import { enableIpForward, firewallRuleset } from '../../../src/network/firewall.js';
import { FIXTURES, SKIP_NO_NFT_CHECK } from '../fixtures.js';

// Golden rulesets in test/fixtures/network/*.nft; UPDATE_GOLDENS=1 rewrites them (review the diff).
const dir = join(FIXTURES, 'network');
const NOW = '2025-01-01T00:00:00.000Z';
const net = (name: string, cidr: string, nat = true): NetworkRecord => validateNetwork({ name, kind: 'bridge', cidr, nat }, NOW);

function golden(name: string, got: string): void {
  const file = join(dir, `${name}.nft`);
  if (process.env.UPDATE_GOLDENS === '1') writeFileSync(file, got);
  else assert.ok(existsSync(file), `golden file ${file} is missing: run the test with UPDATE_GOLDENS=1 to write it, and review it`);
  assert.equal(got, readFileSync(file, 'utf8'));
}

test('ruleset golden: a NAT network and an isolated one (user networks ignored, sorted by name)', () => {
  golden('nat-and-isolated', firewallRuleset([net('b-iso', '10.20.0.0/24', false), validateNetwork({ name: 'u', kind: 'user' }, NOW), net('a-nat', '10.10.0.0/24')]));
});

test('ruleset golden: isolated networks only have no nat chain', () => {
  golden('isolated-only', firewallRuleset([net('iso', '192.168.50.0/29', false)]));
});

test('ruleset golden: no bridge network removes the table', () => {
  const got = firewallRuleset([validateNetwork({ name: 'u', kind: 'user' }, NOW)]);
  golden('empty', got);
  assert.match(got, /^table inet corral\ndelete table inet corral\n$/m);
  assert.ok(!got.includes('{'));
});

test('every ruleset re-creates the table in one transaction: declare, delete, define', () => {
  const text = firewallRuleset([net('a', '10.10.0.0/24')]);
  const lines = text.split('\n').filter((l) => !l.startsWith('#'));
  assert.deepEqual(lines.slice(0, 3), ['table inet corral', 'delete table inet corral', 'table inet corral {']);
});

test('bridge guests: metadata (169.254.0.0/16) dropped before a NAT network may route out; the host only through input', () => {
  const text = firewallRuleset([net('a-nat', '10.10.0.0/24')]);
  const forward = text.slice(text.indexOf('chain forward'), text.indexOf('chain postrouting'));
  const meta = forward.indexOf('iifname "crl-a-nat" ip daddr 169.254.0.0/16 drop');
  const out = forward.indexOf('iifname "crl-a-nat" ip saddr 10.10.0.0/24 accept');
  assert.ok(meta >= 0 && out > meta, forward);
  // to the host itself: after DHCP, DNS and ping on its own gateway, everything from the bridge is dropped
  const input = text.slice(text.indexOf('chain input'), text.indexOf('chain forward')).trim().split('\n').map((l) => l.trim()).filter((l) => l.startsWith('iifname'));
  assert.equal(input.at(-1), 'iifname "crl-a-nat" drop');
  for (const r of input.slice(0, -1)) assert.match(r, /established,related accept|udp dport 67 accept|ip daddr 10\.10\.0\.1 /, r);
});

test('a tampered record cannot inject into the ruleset', () => {
  const a = net('a', '10.10.0.0/24');
  assert.throws(() => firewallRuleset([{ ...a, bridge: 'crl-a" accept; flush ruleset; "' }]), /invalid/);
  assert.throws(() => firewallRuleset([{ ...a, cidr: '10.10.0.0/24 accept' }]), /invalid cidr/);
  assert.throws(() => firewallRuleset([{ ...a, gateway: '10.10.0.1 }' }]), /invalid gateway/);
  assert.throws(() => firewallRuleset([{ ...a, name: 'a\nflush ruleset' }]), /invalid/);
});

test('ip_forward: switched on once and reported; left on', () => {
  const root = mkdtempSync(join(tmpdir(), 'corral-proc-'));
  try {
    mkdirSync(join(root, 'sys/net/ipv4'), { recursive: true });
    const f = join(root, 'sys/net/ipv4/ip_forward');
    writeFileSync(f, '0\n');
    assert.deepEqual(enableIpForward(root), { changed: true });
    assert.equal(readFileSync(f, 'utf8').trim(), '1');
    assert.deepEqual(enableIpForward(root), { changed: false });
    rmSync(f);
    assert.throws(() => enableIpForward(root), (e: unknown) => (e as { code?: string }).code === 'NETWORK_FAILED');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('nft accepts the golden rulesets (nft -c: checked by the kernel, nothing applied)', { skip: SKIP_NO_NFT_CHECK }, () => {
  for (const name of ['nat-and-isolated', 'isolated-only', 'empty']) {
    execFileSync('nft', ['-c', '-f', join(dir, `${name}.nft`)], { stdio: 'pipe' });
  }
});
