/**
 * A host's part of a migration's TLS (services/migration-tls.ts) against a recording QEMU: the pair is on disk only
 * while QEMU reads it (object-add), in the instance dir, readable by QEMU's group and nobody else; the ids come back
 * for NBD too; a second setup of the same QEMU makes nothing new, one of a new QEMU does; release empties the
 * parameters and deletes the objects; a trusted network makes nothing. And the postcopy check's refusal.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CorralError } from '../../../src/core/errors.js';
import { MigrationTls } from '../../../src/services/migration-tls.js';
import { prepareIncomingPostcopy } from '../../../src/services/migration-postcopy.js';

const root = mkdtempSync(join(tmpdir(), 'corral-mig-tls-'));
after(() => rmSync(root, { recursive: true, force: true }));

const PAIR = { caPem: '-----BEGIN CERTIFICATE-----\nca\n', certPem: '-----BEGIN CERTIFICATE-----\nme\n', keyPem: '-----BEGIN PRIVATE KEY-----\nsecret\n' };

function qemu() {
  const calls: Array<[string, unknown]> = [];
  const objects = new Set<string>();
  const seen: Array<{ files: Record<string, { text: string; mode: number; gid: number }>; dirMode: number }> = [];
  const vm = {
    objects: async () => [...objects],
    objectAdd: async (a: Record<string, unknown>) => {
      calls.push(['object-add', a]);
      if (a['qom-type'] === 'tls-creds-x509') {
        const dir = String(a.dir);
        const files: Record<string, { text: string; mode: number; gid: number }> = {};
        for (const f of ['ca-cert.pem', `${String(a.endpoint)}-cert.pem`, `${String(a.endpoint)}-key.pem`]) {
          const st = statSync(join(dir, f));
          files[f] = { text: readFileSync(join(dir, f), 'utf8'), mode: st.mode & 0o777, gid: st.gid };
        }
        seen.push({ files, dirMode: statSync(dir).mode & 0o777 });
      }
      objects.add(String(a.id));
    },
    objectDel: async (id: string) => { calls.push(['object-del', id]); objects.delete(id); },
    migrateSetParameters: async (p: unknown) => { calls.push(['migrate-set-parameters', p]); },
  };
  return { vm, calls, objects, seen };
}

function service(vm: unknown, pid: { n: number }, runAs?: { user: string; uid: number; gid: number; groups: number[] }) {
  const dir = join(root, `inst-${Math.random().toString(16).slice(2)}`);
  mkdirSync(dir, { mode: 0o711 });
  const instances = { live: () => ({ row: { pid: pid.n, uuid: 'u' }, vm }), paths: () => ({ dir }) };
  const warnings: string[] = [];
  const tls = new MigrationTls({ instances: instances as never, log: { warn: (_o, m) => warnings.push(m) }, ...(runAs ? { runAs } : {}) });
  return { tls, dir, warnings };
}

test('the destination: server creds from files that exist only during object-add, the authz, the ids; release undoes it', async () => {
  const q = qemu();
  const pid = { n: 100 };
  const asRoot = process.getuid?.() === 0;
  const s = service(q.vm, pid, asRoot ? { user: 'nobody', uid: 65534, gid: 65534, groups: [] } : undefined);
  const ids = await s.tls.setup('g1', 'server', { ...PAIR, peer: 'CN=a1,O=corral-migration,OU=00112233445566aa' });
  assert.deepEqual(ids, { endpoint: 'server', creds: 'corral-migration-tls', authz: 'corral-migration-authz', hostname: null });
  assert.deepEqual(q.calls.map(([c, a]) => [c, (a as { 'qom-type'?: string })['qom-type']]), [['object-add', 'tls-creds-x509'], ['object-add', 'authz-simple']]);
  const creds = q.calls[0]![1] as Record<string, unknown>;
  assert.deepEqual(creds, { 'qom-type': 'tls-creds-x509', id: 'corral-migration-tls', dir: join(s.dir, 'migration-tls'), endpoint: 'server', 'verify-peer': true });
  assert.equal((q.calls[1]![1] as { identity: string }).identity, 'CN=a1,O=corral-migration,OU=00112233445566aa');
  const { files, dirMode } = q.seen[0]!;
  assert.equal(files['server-key.pem']!.text, PAIR.keyPem);
  assert.equal(files['server-cert.pem']!.text, PAIR.certPem);
  assert.equal(files['ca-cert.pem']!.text, PAIR.caPem);
  if (asRoot) {
    assert.equal(files['server-key.pem']!.mode, 0o640, 'QEMU\'s group reads it, nobody else');
    assert.equal(files['server-key.pem']!.gid, 65534);
    assert.equal(dirMode, 0o710);
  }
  assert.equal(existsSync(join(s.dir, 'migration-tls')), false, 'the key is on disk no longer than QEMU reads it');
  assert.deepEqual(s.tls.ids('g1'), ids);

  // again for the same QEMU (NBD's step after the migration's, or the other way round): nothing new
  assert.deepEqual(await s.tls.setup('g1', 'server', { ...PAIR, peer: 'x' }), ids);
  assert.equal(q.calls.length, 2);

  await s.tls.release('g1');
  assert.deepEqual(q.calls.slice(2), [
    ['migrate-set-parameters', { 'tls-creds': '', 'tls-hostname': '', 'tls-authz': '' }],
    ['object-del', 'corral-migration-authz'], ['object-del', 'corral-migration-tls'],
  ]);
  assert.equal(q.objects.size, 0);
  assert.equal(s.tls.ids('g1'), null);
});

test('the source: client creds, the destination\'s name as tls-hostname; a new QEMU gets them again; a trusted network gets nothing', async () => {
  const q = qemu();
  const pid = { n: 7 };
  const s = service(q.vm, pid);
  assert.equal(await s.tls.setup('g1', 'client', null), null);
  assert.equal(q.calls.length, 0);
  const ids = await s.tls.setup('g1', 'client', { ...PAIR, peer: 'a2' });
  assert.deepEqual(ids, { endpoint: 'client', creds: 'corral-migration-tls', authz: null, hostname: 'a2' });
  assert.deepEqual(Object.keys(q.seen[0]!.files), ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']);
  pid.n = 8; // that QEMU ended and another runs the instance: its objects are made anew (the old one's are gone)
  q.objects.clear();
  await s.tls.setup('g1', 'client', { ...PAIR, peer: 'a3' });
  assert.equal(q.seen.length, 2);
  assert.equal(s.tls.ids('g1')!.hostname, 'a3');
  // the same QEMU, another migration's pair (a cancelled one left its objects): made anew, never the old pair
  // (the destination's authz names the new pair's tag: the old certificate would be refused)
  const other = { ...PAIR, certPem: '-----BEGIN CERTIFICATE-----\nnext migration\n', peer: 'a2' };
  await s.tls.setup('g1', 'client', other);
  assert.equal(q.seen.length, 3);
  assert.equal(q.seen[2]!.files['client-cert.pem']!.text, other.certPem);
  assert.deepEqual(q.calls.filter(([c]) => c === 'object-del').map(([, id]) => id), ['corral-migration-tls'], 'the old objects deleted first');
  await s.tls.release('g1', true);
  assert.equal(q.calls.filter(([c]) => c === 'object-del').length, 1, 'a QEMU that is gone is not asked');
});

test('a failed object-add leaves no file behind either', async () => {
  const q = qemu();
  q.vm.objectAdd = async () => { throw new CorralError('QEMU_FAILED', 'QEMU refused object-add: bad'); };
  const s = service(q.vm, { n: 1 });
  await assert.rejects(s.tls.setup('g1', 'client', { ...PAIR, peer: 'a2' }), /QEMU_FAILED|bad/);
  assert.equal(existsSync(join(s.dir, 'migration-tls')), false);
  assert.equal(s.tls.ids('g1'), null);
});

test('postcopy on the destination: the capability (nothing else yet); QEMU\'s refusal is POSTCOPY_UNAVAILABLE, a QEMU gone is not', async () => {
  const calls: string[] = [];
  const ok = { migrateSetCapabilities: async (c: Record<string, boolean>) => { calls.push(JSON.stringify(c)); }, resume: async () => { calls.push('cont'); } };
  await prepareIncomingPostcopy(ok as never, 'a2');
  assert.deepEqual(calls, ['{"postcopy-ram":true}'], 'no cont while inmigrate: QEMU would take the shared disk\'s lock the source holds');
  const refused = { ...ok, migrateSetCapabilities: async () => { throw new CorralError('QEMU_FAILED', 'QEMU refused migrate-set-capabilities: Postcopy is not supported'); } };
  await assert.rejects(prepareIncomingPostcopy(refused as never, 'a2'), (e: CorralError) => {
    assert.equal(e.code, 'POSTCOPY_UNAVAILABLE');
    assert.match(e.message, /host a2[\s\S]*QEMU said: Postcopy is not supported/);
    return true;
  });
  const gone = { ...ok, migrateSetCapabilities: async () => { throw new CorralError('VM_GONE', 'QEMU went away'); } };
  await assert.rejects(prepareIncomingPostcopy(gone as never, 'a2'), (e: CorralError) => e.code === 'VM_GONE');
});
