import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorralError } from '../../../src/core/errors.js';
import {
  agentUnavailable, checkExec, decodeBase64, execPollDelay, guestAddresses, parseExecStatus, parseInterfaces, parseOsInfo,
} from '../../../src/core/guest-agent.js';

test('guest-exec-status: null while the command runs; once exited, its code and base64 streams decoded', () => {
  assert.equal(parseExecStatus({ exited: false }), null);
  assert.equal(parseExecStatus(null), null);
  const r = parseExecStatus({ exited: true, exitcode: 3, 'out-data': Buffer.from('out\n').toString('base64'), 'err-data': Buffer.from([0xff, 0x00]).toString('base64'), 'err-truncated': true });
  assert.deepEqual(r, { exitCode: 3, signal: null, stdout: Buffer.from('out\n'), stderr: Buffer.from([0xff, 0x00]), stdoutTruncated: false, stderrTruncated: true });
  // a command without output has no out-data at all
  assert.deepEqual(parseExecStatus({ exited: true, exitcode: 0 })?.stdout, Buffer.alloc(0));
});

test('guest-exec-status: a command a signal ended exits 128 + N, as a shell says it', () => {
  const r = parseExecStatus({ exited: true, signal: 9 });
  assert.equal(r?.exitCode, 137);
  assert.equal(r?.signal, 9);
});

test('guest-get-osinfo: the fields shown, renamed; anything else or of the wrong type left out', () => {
  assert.deepEqual(parseOsInfo({ id: 'debian', name: 'Debian GNU/Linux', 'pretty-name': 'Debian GNU/Linux 12 (bookworm)', 'version-id': '12', 'kernel-release': '6.1.0', machine: 'x86_64', 'kernel-version': '#1 SMP', variant: 7 }), {
    id: 'debian', name: 'Debian GNU/Linux', prettyName: 'Debian GNU/Linux 12 (bookworm)', versionId: '12', kernelRelease: '6.1.0', machine: 'x86_64',
  });
  assert.deepEqual(parseOsInfo('nonsense'), {});
});

test('guest-network-get-interfaces: names, MACs and addresses; malformed entries dropped; the addresses a user wants: no loopback, IPv4 first', () => {
  const ifaces = parseInterfaces([
    { name: 'lo', 'hardware-address': '00:00:00:00:00:00', 'ip-addresses': [{ 'ip-address-type': 'ipv4', 'ip-address': '127.0.0.1', prefix: 8 }] },
    { name: 'eth0', 'hardware-address': '52:54:00:12:34:56', 'ip-addresses': [
      { 'ip-address-type': 'ipv6', 'ip-address': 'fec0::1', prefix: 64 },
      { 'ip-address-type': 'ipv4', 'ip-address': '10.0.2.15', prefix: 24 },
      { 'ip-address-type': 'ipx', 'ip-address': 'x', prefix: 1 },
      { 'ip-address-type': 'ipv4', 'ip-address': '10.0.2.16' },
    ] },
    { name: 'eth1' },
    { 'hardware-address': 'no name' },
    'junk',
  ]);
  assert.deepEqual(ifaces.map((i) => [i.name, i.mac, i.addresses.length]), [['lo', '00:00:00:00:00:00', 1], ['eth0', '52:54:00:12:34:56', 2], ['eth1', undefined, 0]]);
  assert.deepEqual(guestAddresses(ifaces), [
    { family: 'ipv4', address: '10.0.2.15', prefix: 24, interface: 'eth0' },
    { family: 'ipv6', address: 'fec0::1', prefix: 64, interface: 'eth0' },
  ]);
  assert.deepEqual(parseInterfaces({}), []);
});

test('an exec request: a program and its arguments as strings, stdin within its limit, a timeout in range', () => {
  const bad = (f: () => void, field: string): void => assert.throws(f, (e) => e instanceof CorralError && e.code === 'INVALID_SPEC' && e.details.field === field);
  checkExec(['sh', '-c', 'true'], null, 300);
  bad(() => checkExec([], null, 300), 'command');
  bad(() => checkExec(['', 'x'], null, 300), 'command');
  bad(() => checkExec(['sh', 3], null, 300), 'command');
  bad(() => checkExec(['sh', 'a\0b'], null, 300), 'command');
  checkExec(['cat'], Buffer.alloc(512 * 1024), 300);
  bad(() => checkExec(['cat'], Buffer.alloc(512 * 1024 + 1), 300), 'stdin');
  bad(() => checkExec(['cat'], null, 0), 'timeout');
  assert.deepEqual(decodeBase64('stdin', 'aGk='), Buffer.from('hi'));
  bad(() => decodeBase64('stdin', 'not base64!'), 'stdin');
});

test('exec polls quickly first, then every 500 ms', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 20].map(execPollDelay), [20, 40, 80, 160, 320, 500, 500, 500]);
});

test('AGENT_UNAVAILABLE says why: no channel (and how to add it), or the instance not running', () => {
  const none = agentUnavailable('web1', 'no-channel');
  assert.equal(none.code, 'AGENT_UNAVAILABLE');
  assert.equal(none.status, 409);
  assert.match(none.message, /has no guest agent channel \(it was created with --no-agent; corral set web1 agent=yes/);
  assert.match(agentUnavailable('web1', 'not-running', 'stopped').message, /is stopped: the guest agent answers only while it runs/);
});
