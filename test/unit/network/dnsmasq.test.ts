import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCorralError } from '../../../src/core/errors.js';
import { dnsmasqArgv, dnsmasqFiles, findDnsmasq, isDnsmasqOf, parseLeases, pruneLeaseText, startDnsmasq, type DnsmasqConfig } from '../../../src/network/dnsmasq.js';

const tmp = mkdtempSync(join(tmpdir(), 'corral-dnsmasq-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const files = dnsmasqFiles('/var/lib/corral/networks/lab');
const base: DnsmasqConfig = { bridge: 'crl-lab', gateway: '10.10.0.1', prefix: 24, dhcp: { start: '10.10.0.10', end: '10.10.0.254' }, nat: true, dns: true, files, hosts: [] };

test('argv of a NAT network: DHCP on the bridge only, router and DNS = gateway, no host files', () => {
  assert.deepEqual(dnsmasqArgv(base), [
    '--conf-file=/dev/null',
    '--keep-in-foreground',
    '--bind-interfaces',
    '--interface=crl-lab',
    '--except-interface=lo',
    '--listen-address=10.10.0.1',
    '--dhcp-range=10.10.0.10,10.10.0.254,255.255.255.0,1h',
    '--dhcp-authoritative',
    '--dhcp-leasefile=/var/lib/corral/networks/lab/leases',
    '--pid-file=/var/lib/corral/networks/lab/dnsmasq.pid',
    '--log-facility=/var/lib/corral/networks/lab/dnsmasq.log',
    '--no-hosts',
    '--dhcp-option=option:router,10.10.0.1',
    '--dhcp-option=option:dns-server,10.10.0.1',
  ]);
});

test('argv: one --dhcp-host=MAC,IP per NIC, in MAC order, after the other options', () => {
  const argv = dnsmasqArgv({ ...base, hosts: [{ mac: '52:54:00:00:00:0b', ip: '10.10.0.11' }, { mac: '52:54:00:00:00:0a', ip: '10.10.0.10' }] });
  assert.deepEqual(argv.slice(-2), ['--dhcp-host=52:54:00:00:00:0a,10.10.0.10', '--dhcp-host=52:54:00:00:00:0b,10.10.0.11']);
  assert.deepEqual(argv.slice(0, -2), dnsmasqArgv(base));
});

test('lease file before a restart: leases another MAC holds on a reserved address go, every other line stays', () => {
  const text = [
    '1735693200 52:54:00:00:00:99 10.10.0.10 old *',
    '1735693200 52:54:00:00:00:0a 10.10.0.10 web1 *',
    '1735693200 52:54:00:00:00:0b 10.10.0.42 web2 *',
    'duid 00:01:00:01:2c:5b:3c:7a:52:54:00:aa:bb:03',
    '',
  ].join('\n');
  const hosts = [{ mac: '52:54:00:00:00:0a', ip: '10.10.0.10' }, { mac: '52:54:00:00:00:0b', ip: '10.10.0.11' }];
  assert.equal(pruneLeaseText(text, hosts), text.split('\n').slice(1).join('\n'));
  assert.equal(pruneLeaseText(text, []), text);
});

test('argv of an isolated network: no DNS (--port=0), an empty router option (no default route)', () => {
  const argv = dnsmasqArgv({ ...base, nat: false, dns: false, prefix: 29, dhcp: { start: '192.168.1.10', end: '192.168.1.14' } });
  assert.ok(argv.includes('--port=0'));
  assert.ok(argv.includes('--dhcp-option=option:router'));
  assert.ok(!argv.some((a) => a.startsWith('--dhcp-option=option:dns-server')));
  assert.ok(argv.includes('--dhcp-range=192.168.1.10,192.168.1.14,255.255.255.248,1h'));
});

test('argv with a user: dnsmasq drops to that user and its group once its sockets are bound', () => {
  const argv = dnsmasqArgv({ ...base, user: 'corral-dnsmasq' });
  assert.deepEqual(argv.slice(-2), ['--user=corral-dnsmasq', '--group=corral-dnsmasq']);
  assert.ok(!dnsmasqArgv(base).some((a) => a.startsWith('--user')), 'none given: dnsmasq\'s own default');
});

test('lease file: expiry mac ip hostname clientid; * is no name, 0 never expires; DHCPv6 lines skipped', () => {
  const text = [
    '1735693200 52:54:00:AA:bb:01 10.10.0.23 web1 01:52:54:00:aa:bb:01',
    '0 52:54:00:aa:bb:02 10.10.0.24 * *',
    'duid 00:01:00:01:2c:5b:3c:7a:52:54:00:aa:bb:03',
    '1735693200 1234 fd00::5 v6host 00:01',
    'garbage',
    '',
  ].join('\n');
  assert.deepEqual(parseLeases(text), [
    { mac: '52:54:00:aa:bb:01', ip: '10.10.0.23', hostname: 'web1', expires: '2025-01-01T01:00:00.000Z' },
    { mac: '52:54:00:aa:bb:02', ip: '10.10.0.24', hostname: null, expires: null },
  ]);
  assert.deepEqual(parseLeases(''), []);
});

let procs = 0;
function fakeProc(pid: number, argv: string[], state = 'S'): string {
  const proc = join(tmp, `proc-${++procs}`);
  mkdirSync(join(proc, String(pid)), { recursive: true });
  writeFileSync(join(proc, String(pid), 'cmdline'), `${argv.join('\0')}\0`);
  writeFileSync(join(proc, String(pid), 'stat'), `${pid} (dnsmasq) ${state} 1 1 1 0 -1`);
  return proc;
}

test('a dnsmasq is recognised by its pid file and a cmdline naming this lease file; otherwise by a /proc scan', () => {
  const dir = join(tmp, 'net1');
  mkdirSync(dir);
  const f = dnsmasqFiles(dir);
  const proc = fakeProc(4242, ['dnsmasq', '--keep-in-foreground', `--dhcp-leasefile=${f.leases}`]);
  writeFileSync(f.pid, '4242\n');
  assert.equal(isDnsmasqOf(4242, f.leases, proc), true);
  assert.equal(findDnsmasq(f, proc), 4242);
  // another network's lease file, another program, a zombie: not ours
  assert.equal(isDnsmasqOf(4242, join(tmp, 'other', 'leases'), proc), false);
  assert.equal(findDnsmasq(f, fakeProc(4242, ['/usr/bin/python3', `--dhcp-leasefile=${f.leases}`])), null);
  assert.equal(findDnsmasq(f, fakeProc(4242, ['dnsmasq', `--dhcp-leasefile=${f.leases}`], 'Z')), null);
  // the pid file lost or pointing elsewhere: found by the scan
  writeFileSync(f.pid, '1\n');
  assert.equal(findDnsmasq(f, proc), 4242);
  rmSync(f.pid);
  assert.equal(findDnsmasq(f, proc), 4242);
  assert.equal(findDnsmasq(f, join(tmp, 'no-proc')), null);
});

function fakeBinary(name: string, script: string): string {
  const p = join(tmp, name);
  writeFileSync(p, `#!/bin/sh\n${script}\n`);
  chmodSync(p, 0o755);
  return p;
}

test('start: an early exit is NETWORK_FAILED naming the command and carrying its stderr', async () => {
  const dir = join(tmp, 'net2');
  mkdirSync(dir);
  const bin = fakeBinary('dnsmasq-fails', 'echo "dnsmasq: failed to create listening socket for 10.10.0.1: Address already in use" >&2; exit 2');
  await assert.rejects(startDnsmasq({ ...base, files: dnsmasqFiles(dir) }, { binary: bin, proc: join(tmp, 'no-proc') }), (e: unknown) =>
    isCorralError(e) && e.code === 'NETWORK_FAILED' && /dnsmasq-fails --conf-file=\/dev\/null/.test(e.message) && /Address already in use/.test(e.message) && /Address already in use/.test(String(e.details.stderr)));
  await assert.rejects(startDnsmasq({ ...base, files: dnsmasqFiles(dir) }, { binary: join(tmp, 'missing-binary'), proc: join(tmp, 'no-proc') }), /not installed/);
});

test('start: ready once it has written its own pid to the pid file', async () => {
  const dir = join(tmp, 'net3');
  mkdirSync(dir);
  const bin = fakeBinary('dnsmasq-ok', 'for a; do case "$a" in --pid-file=*) sleep 0.2; echo $$ > "${a#--pid-file=}";; esac; done; exec sleep 30');
  const got = await startDnsmasq({ ...base, files: dnsmasqFiles(dir) }, { binary: bin, proc: join(tmp, 'no-proc') });
  try {
    assert.equal(got.adopted, false);
    assert.ok(got.pid > 0);
  } finally {
    process.kill(got.pid, 'SIGKILL');
  }
});

test('start: a running dnsmasq with the wanted command line is adopted, not started again', async () => {
  const dir = join(tmp, 'net4');
  mkdirSync(dir);
  const cfg: DnsmasqConfig = { ...base, files: dnsmasqFiles(dir), hosts: [{ mac: '52:54:00:00:00:0a', ip: '10.10.0.10' }] };
  const proc = fakeProc(4343, ['dnsmasq', ...dnsmasqArgv(cfg)]);
  writeFileSync(cfg.files.pid, '4343\n');
  assert.deepEqual(await startDnsmasq(cfg, { binary: join(tmp, 'missing-binary'), proc }), { pid: 4343, adopted: true });
});
