/**
 * TLS for a live migration on a host (rules in src/core/migration-transport.ts; the pairs come from the controller,
 * src/cluster/migration-transport.ts): the instance's QEMU gets this migration's pair as a `tls-creds-x509` object
 * (and, on the destination, an `authz-simple` object letting in only this migration's source), and loses them when
 * the migration ends.
 *
 * The files QEMU reads the pair from live only while QEMU reads them: the credentials are loaded when the object is
 * made (object-add), so the directory is made just before and removed right after, whatever happens. It is
 * INSTANCE_DIR/migration-tls: the instance dir is root's (0711), so QEMU, which runs as corral-qemu, can plant
 * nothing there (the runtime dir is QEMU's own, where it could); the directory is root:corral-qemu 0710 and the
 * files root:corral-qemu 0640 (lendTo): QEMU reads them and can change none. From then on the key is only in the
 * QEMU's memory, until `release` deletes the objects (or the QEMU ends).
 *
 * `setup` is what a local-disk migration's NBD calls too: the same objects serve `nbd-server-start` (tls-creds,
 * tls-authz) on the destination and the source's `nbd` blockdev (tls-creds, tls-hostname). It is idempotent per
 * instance: whichever step comes first makes them. `release` must come after the NBD server and client are gone
 * (QEMU refuses to delete credentials in use).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MIGRATION_TLS_AUTHZ, MIGRATION_TLS_CREDS, tlsAuthzObject, tlsCredsFiles, tlsCredsObject, tlsMigrationParameters,
  type MigrationTlsMaterial, type TlsEndpoint,
} from '../core/migration-transport.js';
import { lendTo, ownAs, type RunAs } from '../host/run-as.js';
import type { VmControl } from '../vm/driver.js';
import type { InstanceService } from './instances.js';

/** What a migrating instance's QEMU holds for TLS: the objects' ids, for NBD's arguments too. */
export interface MigrationTlsIds {
  endpoint: TlsEndpoint;
  /** the tls-creds-x509 object */
  creds: string;
  /** the destination's authz object (tls-authz); null on the source */
  authz: string | null;
  /** the name the destination's certificate must carry (tls-hostname); null on the destination */
  hostname: string | null;
}

export interface MigrationTlsDeps {
  instances: Pick<InstanceService, 'live' | 'paths'>;
  /** QEMU's user (absent: a fake hypervisor, which reads no file) */
  runAs?: RunAs;
  log: { warn: (o: object, m: string) => void };
}

export class MigrationTls {
  /** by instance: the ids, and the pid of the QEMU that holds them */
  private readonly held = new Map<string, { ids: MigrationTlsIds; pid: number | null; cert: string }>();

  constructor(private readonly d: MigrationTlsDeps) {}

  /** The ids of the objects an instance's QEMU holds for its migration now, or null (none: plain TCP). */
  ids(name: string): MigrationTlsIds | null {
    return this.held.get(name)?.ids ?? null;
  }

  /**
   * Give the instance's QEMU this migration's pair as `endpoint` (server: the destination, client: the source) and
   * answer the ids; null when `material` is null (the migration network is trusted: nothing is made).
   */
  async setup(name: string, endpoint: TlsEndpoint, material: MigrationTlsMaterial | null): Promise<MigrationTlsIds | null> {
    if (!material) return null;
    const live = this.d.instances.live(name);
    const had = this.held.get(name);
    // the same migration asking again (the disks' mirrors, then the RAM): its objects are made once; another
    // migration's pair (a cancelled one's objects still there) is never reused, its certificate names another tag
    if (had?.ids.endpoint === endpoint && had.pid === live.row.pid && had.cert === material.certPem) return had.ids;
    const dir = join(this.d.instances.paths(live.row).dir, 'migration-tls');
    const vm = live.vm;
    // a leftover of an earlier migration's object (its daemon stopped before release): made again with this pair
    await this.deleteObjects(vm);
    this.writeDir(dir, endpoint, material);
    try {
      await vm.objectAdd(tlsCredsObject(endpoint, dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    if (endpoint === 'server') await vm.objectAdd(tlsAuthzObject(material.peer));
    const ids: MigrationTlsIds = endpoint === 'server'
      ? { endpoint, creds: MIGRATION_TLS_CREDS, authz: MIGRATION_TLS_AUTHZ, hostname: null }
      : { endpoint, creds: MIGRATION_TLS_CREDS, authz: null, hostname: material.peer };
    this.held.set(name, { ids, pid: live.row.pid, cert: material.certPem });
    return ids;
  }

  /**
   * The migration is over on this side: its TLS parameters emptied and its objects deleted (the key leaves QEMU's
   * memory). `qemuGone`: the QEMU has ended or is about to (nothing to ask it). Never throws: a failure is logged.
   */
  async release(name: string, qemuGone = false): Promise<void> {
    if (!this.held.delete(name) || qemuGone) return;
    try {
      const vm = this.d.instances.live(name).vm;
      await vm.migrateSetParameters(tlsMigrationParameters(null));
      await this.deleteObjects(vm);
    } catch (e) {
      this.d.log.warn({ instance: name, error: (e as Error).message }, 'removing the migration\'s TLS credentials from QEMU failed');
    }
  }

  private async deleteObjects(vm: VmControl): Promise<void> {
    const have = await vm.objects();
    for (const id of [MIGRATION_TLS_AUTHZ, MIGRATION_TLS_CREDS]) if (have.includes(id)) await vm.objectDel(id);
  }

  /** The pair's files, readable by QEMU's user and by nobody else (see the file's comment). */
  private writeDir(dir: string, endpoint: TlsEndpoint, m: MigrationTlsMaterial): void {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { mode: 0o700 });
    for (const [file, text] of Object.entries(tlsCredsFiles(endpoint, m))) {
      const path = join(dir, file);
      writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
      if (this.d.runAs) lendTo(this.d.runAs, path);
    }
    if (this.d.runAs) ownAs(dir, 0, this.d.runAs.gid, 0o710);
  }
}
