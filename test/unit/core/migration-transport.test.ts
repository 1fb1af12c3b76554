import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_CLUSTER_SETTINGS, MIGRATION_TLS_AUTHZ, MIGRATION_TLS_CREDS, migrationPeerDn, migrationTlsMaterial, parseClusterSetting, postcopyBroken,
  postcopyUnavailable, shouldStartPostcopy, tlsAuthzObject, tlsCredsFiles, tlsCredsObject, tlsMigrationParameters,
} from '../../../src/core/migration-transport.js';

const PEMS = { caPem: '-----BEGIN CERTIFICATE-----\nca\n', certPem: '-----BEGIN CERTIFICATE-----\nme\n', keyPem: '-----BEGIN PRIVATE KEY-----\nk\n' };

test('the migration-tls setting: on by default, set with on|off, anything else refused naming it', () => {
  assert.deepEqual(DEFAULT_CLUSTER_SETTINGS, { migrationTls: true });
  assert.deepEqual(parseClusterSetting('migration-tls', 'off'), { migrationTls: false });
  assert.deepEqual(parseClusterSetting('migration-tls', 'on'), { migrationTls: true });
  assert.throws(() => parseClusterSetting('migration-tls', 'yes'), /INVALID_SPEC|"on" or "off", not "yes"/);
  assert.throws(() => parseClusterSetting('tls', 'on'), /no cluster setting named "tls" \(there is: migration-tls\)/);
  assert.throws(() => parseClusterSetting('__proto__', 'on'), /no cluster setting/);
});

test('QMP bodies: the creds object per endpoint (verify-peer on), the authz naming one client, the parameters per side', () => {
  assert.deepEqual(tlsCredsObject('server', '/d/i/migration-tls'), { 'qom-type': 'tls-creds-x509', id: MIGRATION_TLS_CREDS, dir: '/d/i/migration-tls', endpoint: 'server', 'verify-peer': true });
  assert.equal(tlsCredsObject('client', '/x').endpoint, 'client');
  const dn = migrationPeerDn('a1', '0123456789abcdef');
  assert.equal(dn, 'CN=a1,O=corral-migration,OU=0123456789abcdef', 'GnuTLS\'s form of the subject, in its order');
  assert.deepEqual(tlsAuthzObject(dn), { 'qom-type': 'authz-simple', id: MIGRATION_TLS_AUTHZ, identity: dn });
  assert.deepEqual(tlsCredsFiles('server', PEMS), { 'ca-cert.pem': PEMS.caPem, 'server-cert.pem': PEMS.certPem, 'server-key.pem': PEMS.keyPem });
  assert.deepEqual(Object.keys(tlsCredsFiles('client', PEMS)), ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']);
  // plain: every TLS parameter emptied (a QEMU keeps the last migration's, naming an object that is gone)
  assert.deepEqual(tlsMigrationParameters(null), { 'tls-creds': '', 'tls-hostname': '', 'tls-authz': '' });
  assert.deepEqual(tlsMigrationParameters({ creds: MIGRATION_TLS_CREDS, authz: MIGRATION_TLS_AUTHZ, hostname: null }), { 'tls-creds': MIGRATION_TLS_CREDS, 'tls-hostname': '', 'tls-authz': MIGRATION_TLS_AUTHZ });
  assert.deepEqual(tlsMigrationParameters({ creds: MIGRATION_TLS_CREDS, authz: null, hostname: 'a2' }), { 'tls-creds': MIGRATION_TLS_CREDS, 'tls-hostname': 'a2', 'tls-authz': '' });
});

test('a step\'s TLS material: absent is plain; PEMs of the right kinds and a peer, or INVALID_SPEC naming the field', () => {
  assert.equal(migrationTlsMaterial(undefined), null);
  assert.equal(migrationTlsMaterial(null), null);
  assert.deepEqual(migrationTlsMaterial({ ...PEMS, peer: 'a2' }), { ...PEMS, peer: 'a2' });
  assert.throws(() => migrationTlsMaterial({ ...PEMS, keyPem: PEMS.certPem, peer: 'a2' }), /tls\.keyPem/);
  assert.throws(() => migrationTlsMaterial({ ...PEMS, caPem: 42, peer: 'a2' }), /tls\.caPem/);
  assert.throws(() => migrationTlsMaterial({ ...PEMS, certPem: `${PEMS.certPem}${'x'.repeat(20_000)}`, peer: 'a2' }), /tls\.certPem/);
  assert.throws(() => migrationTlsMaterial({ ...PEMS }), /tls\.peer/);
  assert.throws(() => migrationTlsMaterial({ ...PEMS, peer: 'a\nb' }), /tls\.peer/);
  assert.throws(() => migrationTlsMaterial('yes'), /tls/);
});

test('postcopy: the switch comes once the first pass is done and the migration is still active; what breaks it', () => {
  assert.equal(shouldStartPostcopy({ status: 'active', passes: 1 }), false, 'the first pass still runs');
  assert.equal(shouldStartPostcopy({ status: 'active', passes: null }), false);
  assert.equal(shouldStartPostcopy({ status: 'active', passes: 2 }), true);
  assert.equal(shouldStartPostcopy({ status: 'active', passes: 5 }), true);
  assert.equal(shouldStartPostcopy({ status: 'setup', passes: 0 }), false);
  assert.equal(shouldStartPostcopy({ status: 'completed', passes: 2 }), false, 'converged in precopy: no switch');
  assert.equal(shouldStartPostcopy({ status: 'device', passes: 2 }), false);
  for (const s of ['postcopy-paused', 'failed', 'cancelled']) assert.equal(postcopyBroken(s), true, s);
  for (const s of ['postcopy-active', 'completed', 'active']) assert.equal(postcopyBroken(s), false, s);
});

test('POSTCOPY_UNAVAILABLE says why (the sysctl at 0, or no userfaultfd) and the fix, with QEMU\'s words', () => {
  const e = postcopyUnavailable('a2', 'Postcopy is not supported', '0');
  assert.equal(e.code, 'POSTCOPY_UNAVAILABLE');
  assert.match(e.message, /vm\.unprivileged_userfaultfd is 0 on host a2: its QEMU runs unprivileged[\s\S]*sysctl -w vm\.unprivileged_userfaultfd=1[\s\S]*QEMU said: Postcopy is not supported/);
  assert.match(postcopyUnavailable('a2', 'x', null).message, /userfaultfd is not in this kernel/);
  assert.match(postcopyUnavailable('a2', 'x', '1').message, /userfaultfd is not usable by it/);
});
