import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SEED_MAX_BYTES, checkNetworkConfig, checkUserData, parsePublicKey, seedFiles, validateCloudInit, validateHostname } from '../../../src/core/cloud-init.js';
import { validateCreate } from '../../../src/core/spec.js';
import { assertInvalidSpec } from '../fixtures.js';
import { GiB } from '../../../src/core/units.js';

// Keys made with ssh-keygen (throwaway, never used anywhere).
const ED = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAgLAhB0gRNMGMYhLuaFd6rlhrLGWyvmJyszXiWuwkWt me@host';
const RSA = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDhiR7h+NuSGYW8sqfgiy3y0b/82YPLco0pYmReENsrIenHpGjUAVjqgrTzFnmh3+ePhZsLlTmhwdUB62ErcjH/9FpHRfw+637p8DFmrzO3cBAuCBPDscE5RACsmc+EWPBi1sGBytguYCANO54nYS2XRjiyJtKaTEm/UUce9pp3jQ== rsa key';
const EC = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBB1yOOe0ocFAQt3byHsGaiEJ8UAvxHlpT81Hb66IuX7kYi1fFLHosBxGcZhftIJNnu1EgeliveioJOGDqQjVwfQ= ec';
const host = { cpus: 4, memory: 8 * GiB, cpuList: [0, 1, 2, 3] };

const invalid = assertInvalidSpec;

test('OpenSSH public keys of each common type pass, normalised to single spaces', () => {
  assert.equal(parsePublicKey(`  ${ED}\n`, 'k'), ED);
  assert.equal(parsePublicKey(RSA, 'k'), RSA);
  assert.equal(parsePublicKey(EC.replace(' ', '\t'), 'k'), EC);
  assert.equal(parsePublicKey(ED.replace(' me@host', ''), 'k'), ED.replace(' me@host', ''));
});

test('a key whose line type and blob type differ, a bad blob, a private key, two lines or an unknown type are refused', () => {
  invalid(() => parsePublicKey(ED.replace('ssh-ed25519', 'ssh-rsa'), 'sshKeys[0]'), 'sshKeys[0]', /data says it is "ssh-ed25519", its line says ssh-rsa/);
  invalid(() => parsePublicKey('ssh-ed25519 not*base64', 'k'), 'k', /not base64/);
  invalid(() => parsePublicKey(`ssh-ed25519 ${Buffer.from('hello world!').toString('base64')}`, 'k'), 'k', /nothing readable|not a valid/);
  invalid(() => parsePublicKey(`ssh-ed25519 ${Buffer.from([0, 0, 0, 11, ...Buffer.from('ssh-ed25519')]).toString('base64')}`, 'k'), 'k', /no key/);
  invalid(() => parsePublicKey('-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----', 'k'), 'k', /private key/);
  invalid(() => parsePublicKey(`${ED}\n${RSA}`, 'k'), 'k', /more than one line/);
  invalid(() => parsePublicKey('ssh-dss AAAAB3NzaC1kc3M=', 'k'), 'k', /not an OpenSSH public key/);
  invalid(() => parsePublicKey('hello', 'k'), 'k', /starts with "hello"/);
  invalid(() => parsePublicKey(42, 'k'), 'k');
});

test('hostnames: labels of letters, digits and inner dashes, FQDNs too; others refused', () => {
  for (const h of ['web1', 'Web-1', 'a.example.com', 'x'.repeat(63)]) assert.equal(validateHostname(h), h);
  for (const h of ['', 'bad_host', '-a', 'a-', 'a..b', 'a.', 'x'.repeat(64), `${'a.'.repeat(127)}a`, 'a b', 42]) invalid(() => validateHostname(h), 'hostname');
});

test('user-data: #cloud-config (a YAML mapping), scripts and the other cloud-init formats pass; other text is refused', () => {
  for (const u of ['#cloud-config\npackages: [htop]\n', '#cloud-config\n', '#cloud-config\r\n# c\n\nruncmd:\n  - [ls]\n', '#cloud-config\n---\n{}',
    '#!/bin/sh\necho hi\n', '#cloud-boothook\n#!/bin/sh\n', '#include\nhttp://x/y\n', '## template: jinja\n#cloud-config\n', 'Content-Type: multipart/mixed; boundary="b"\n']) {
    assert.equal(checkUserData(u), u);
  }
  invalid(() => checkUserData('packages: [htop]\n'), 'userData', /first line must be #cloud-config/);
  invalid(() => checkUserData(''), 'userData');
  invalid(() => checkUserData('#cloud-configuration\n'), 'userData', /exactly #cloud-config/);
  invalid(() => checkUserData('#cloud-config\nruncmd:\n\t- ls\n'), 'userData', /tabs in indentation \(line 3\)/);
  invalid(() => checkUserData('#cloud-config\n- a list\n'), 'userData', /YAML mapping/);
  invalid(() => checkUserData('#cloud-config\njust words\n'), 'userData', /YAML mapping/);
});

test('network-config: version 1 or 2, at the top or under network:', () => {
  for (const n of ['version: 2\nethernets:\n  id0:\n    match: {name: "en*"}\n    dhcp4: true\n', 'network:\n  version: 1\n  config: []\n', '# c\nversion: "2"\n']) assert.equal(checkNetworkConfig(n), n);
  invalid(() => checkNetworkConfig('ethernets: {}\n'), 'networkConfig', /version: 1/);
  invalid(() => checkNetworkConfig('version: 3\n'), 'networkConfig');
  invalid(() => checkNetworkConfig('version: 2\n\tethernets: {}\n'), 'networkConfig', /tabs/);
});

test('no cloud-init field: no seed; any one of them: a seed with the instance name as hostname', () => {
  assert.equal(validateCloudInit('web1', {}), undefined);
  assert.equal(validateCreate({ name: 'web1', image: 'tiny' }, host).spec.cloudInit, undefined);
  assert.deepEqual(validateCloudInit('web1', { sshKeys: [ED] }), { hostname: 'web1', sshKeys: [ED], userData: null, networkConfig: null });
  assert.deepEqual(validateCreate({ name: 'web1', image: 'tiny', hostname: 'box.lan' }, host).spec.cloudInit, { hostname: 'box.lan', sshKeys: [], userData: null, networkConfig: null });
  invalid(() => validateCreate({ name: 'web1', image: 'tiny', sshKeys: [ED, 'nope'] }, host), 'sshKeys[1]');
});

test('a seed over the cap is refused, naming the field that carries the bulk', () => {
  const big = `#cloud-config\nruncmd:\n  - echo ${'x'.repeat(SEED_MAX_BYTES)}\n`;
  invalid(() => validateCloudInit('web1', { userData: big }), 'userData', /at most 262144/);
  invalid(() => validateCloudInit('web1', { sshKeys: Array.from({ length: 2000 }, () => RSA) }), 'sshKeys', /at most/);
  const fits = `#cloud-config\nruncmd:\n  - echo ${'x'.repeat(SEED_MAX_BYTES - 1000)}\n`;
  assert.equal(validateCloudInit('web1', { userData: fits })?.userData, fits);
});

test('seed files: meta-data with the instance id, hostname and keys; Corral\'s #cloud-config when no user-data', () => {
  const f = seedFiles('6f1e1d1c-8a7b-4c3d-9e2f-a1b2c3d4e5f6', { hostname: 'web1', sshKeys: [ED, RSA], userData: null, networkConfig: null });
  assert.deepEqual(Object.keys(f), ['meta-data', 'user-data']);
  assert.equal(f['meta-data'], `instance-id: "6f1e1d1c-8a7b-4c3d-9e2f-a1b2c3d4e5f6"\nlocal-hostname: "web1"\npublic-keys:\n  - "${ED}"\n  - "${RSA}"\n`);
  assert.equal(f['user-data'], `#cloud-config\n# written by Corral: the instance's hostname and SSH keys (for the image's default user)\nhostname: "web1"\nssh_authorized_keys:\n  - "${ED}"\n  - "${RSA}"\n`);
});

test('seed files: the user\'s user-data and network-config byte for byte; keys and hostname still in meta-data', () => {
  const ud = '#!/bin/sh\necho "hi"\n';
  const nc = 'version: 2\nethernets: {}\n';
  const f = seedFiles('u1', { hostname: 'h', sshKeys: [EC], userData: ud, networkConfig: nc });
  assert.equal(f['user-data'], ud);
  assert.equal(f['network-config'], nc);
  assert.match(f['meta-data']!, /^public-keys:\n {2}- "ecdsa-sha2-nistp256 /m);
  // a comment with a quote or a backslash stays one YAML scalar (JSON's escapes are YAML's)
  const odd = `${ED.replace(' me@host', '')} a "quoted" \\ comment`;
  assert.match(seedFiles('u', { hostname: 'h', sshKeys: [odd], userData: null, networkConfig: null })['meta-data']!, /- "ssh-ed25519 \S+ a \\"quoted\\" \\\\ comment"\n/);
  const none = seedFiles('u', { hostname: 'h', sshKeys: [], userData: null, networkConfig: null });
  assert.doesNotMatch(none['meta-data']! + none['user-data']!, /public-keys|ssh_authorized_keys/);
});
