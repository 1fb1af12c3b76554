/**
 * A live migration's transport, the pure rules: TLS on the stream (and on the NBD traffic of moving disks) with a
 * pair the controller makes for each migration from the cluster CA, unless the cluster's `migration-tls` setting
 * says the network between the hosts is trusted; and postcopy (`--postcopy`): when the controller switches to it.
 *
 * TLS, in QEMU's words (docs/system/tls.rst, migration's tls-creds / tls-hostname / tls-authz parameters):
 * - each side's QEMU gets one `tls-creds-x509` object (id MIGRATION_TLS_CREDS) read from a directory holding
 *   ca-cert.pem and ENDPOINT-cert.pem / ENDPOINT-key.pem; the destination's is endpoint=server, the source's
 *   endpoint=client, both verify-peer=on (each checks the other's certificate against the cluster CA);
 * - the destination also gets an `authz-simple` object (MIGRATION_TLS_AUTHZ) whose identity is the distinguished
 *   name of this migration's client certificate (migrationPeerDn), named as `tls-authz`: only this migration's
 *   source may connect, not any holder of a certificate from the cluster CA;
 * - the source sets `tls-hostname` to the destination host's name, which its certificate carries (CN and DNS SAN).
 * The same objects serve the NBD server (`nbd-server-start` tls-creds + tls-authz) and client (an `nbd` blockdev's
 * tls-creds + tls-hostname) of a local-disk migration.
 */
import { CorralError, invalidSpec } from './errors.js';
import type { MigrationFigures } from './migration.js';

/** The cluster-wide settings (PostgreSQL's `cluster` row): `corral cluster settings`, `corral cluster set KEY VALUE`. */
export interface ClusterSettings {
  /** live migrations encrypt their stream with TLS (default); off: the migration network is trusted */
  migrationTls: boolean;
}

export const DEFAULT_CLUSTER_SETTINGS: Readonly<ClusterSettings> = { migrationTls: true };

/** The settings' names on the command line, and the field each one sets. */
export const SETTING_NAMES: Readonly<Record<string, keyof ClusterSettings>> = { 'migration-tls': 'migrationTls' };

/** `corral cluster set KEY VALUE`: the change it asks for (INVALID_SPEC naming the setting otherwise). */
export function parseClusterSetting(key: string, value: string): Partial<ClusterSettings> {
  const field = Object.hasOwn(SETTING_NAMES, key) ? SETTING_NAMES[key] : undefined;
  if (!field) throw invalidSpec('key', `no cluster setting named "${key}" (there is: ${Object.keys(SETTING_NAMES).join(', ')})`);
  if (value !== 'on' && value !== 'off') throw invalidSpec(key, `${key} is "on" or "off", not "${value}"`);
  return { [field]: value === 'on' };
}

/** The id of the TLS credentials object on a migrating instance's QEMU (one per side, while the migration lasts). */
export const MIGRATION_TLS_CREDS = 'corral-migration-tls';
/** The id of the destination's authz object: who may connect (this migration's source only). */
export const MIGRATION_TLS_AUTHZ = 'corral-migration-authz';
/** The subject O of a migration's certificates: no Corral role, so no controller or agent takes one as a peer. */
export const MIGRATION_ORG = 'corral-migration';

/** A migration's tag (the certificates' OU): 16 lower-case hex digits. */
export const MIGRATION_TAG = /^[0-9a-f]{16}$/;

/** The distinguished name of a migration certificate, as GnuTLS prints it (the order of the subject). */
export function migrationPeerDn(host: string, tag: string): string {
  return `CN=${host},O=${MIGRATION_ORG},OU=${tag}`;
}

/** What one side's QEMU gets for TLS: the cluster CA, this migration's pair for that side, and its peer's name. */
export interface MigrationTlsMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
  /**
   * the destination (server): the distinguished name of the one client it lets in (tls-authz);
   * the source (client): the host name the destination's certificate must carry (tls-hostname)
   */
  peer: string;
}

export type TlsEndpoint = 'server' | 'client';

const PEM_MAX = 16_384;

/** A request body's `tls` (absent or null: plain TCP, the migration network is trusted). */
export function migrationTlsMaterial(v: unknown): MigrationTlsMaterial | null {
  if (v === undefined || v === null) return null;
  const o = v as Record<string, unknown>;
  const pem = (field: keyof MigrationTlsMaterial, kind: string): string => {
    const s = o[field];
    if (typeof s !== 'string' || s.length > PEM_MAX || !s.includes(`-----BEGIN ${kind}`)) throw invalidSpec(`tls.${field}`, `a PEM ${kind.toLowerCase()} (at most ${PEM_MAX} characters)`);
    return s;
  };
  if (typeof o !== 'object') throw invalidSpec('tls', 'the migration\'s TLS material: caPem, certPem, keyPem, peer');
  const peer = o.peer;
  if (typeof peer !== 'string' || peer.length < 1 || peer.length > 300 || /[\0\n]/.test(peer)) throw invalidSpec('tls.peer', 'the peer\'s host name (the source) or distinguished name (the destination)');
  return { caPem: pem('caPem', 'CERTIFICATE'), certPem: pem('certPem', 'CERTIFICATE'), keyPem: pem('keyPem', 'PRIVATE KEY'), peer };
}

/** The files a tls-creds-x509 object of this endpoint reads from its directory. */
export function tlsCredsFiles(endpoint: TlsEndpoint, m: Pick<MigrationTlsMaterial, 'caPem' | 'certPem' | 'keyPem'>): Record<string, string> {
  return { 'ca-cert.pem': m.caPem, [`${endpoint}-cert.pem`]: m.certPem, [`${endpoint}-key.pem`]: m.keyPem };
}

/** object-add's arguments for the credentials: both sides check the other's certificate (verify-peer). */
export function tlsCredsObject(endpoint: TlsEndpoint, dir: string): Record<string, unknown> {
  return { 'qom-type': 'tls-creds-x509', id: MIGRATION_TLS_CREDS, dir, endpoint, 'verify-peer': true };
}

/** object-add's arguments for the destination's authz: exactly this distinguished name. */
export function tlsAuthzObject(identity: string): Record<string, unknown> {
  return { 'qom-type': 'authz-simple', id: MIGRATION_TLS_AUTHZ, identity };
}

/**
 * The TLS migration parameters of one side, from the ids of the objects its QEMU holds (null: plain TCP). Set on
 * every migration, empty when it is plain, since a QEMU keeps its parameters from one migration to the next (and a
 * stale tls-creds names an object that is gone).
 */
export function tlsMigrationParameters(ids: { creds: string; authz: string | null; hostname: string | null } | null): Record<string, string> {
  return { 'tls-creds': ids?.creds ?? '', 'tls-hostname': ids?.hostname ?? '', 'tls-authz': ids?.authz ?? '' };
}

/**
 * When the controller switches a `--postcopy` migration to postcopy: once QEMU has finished its first pass over
 * the RAM (its dirty-sync count reached 2) and the migration is still active, as libvirt's --postcopy-after-precopy
 * does. The bulk of the RAM has then moved once in precopy; what the guest dirtied meanwhile comes over on demand
 * (and in the background) while the guest runs on the destination, so the migration ends whatever the dirty rate.
 * A precopy that converges at the end of its first pass completes without postcopy.
 */
export function shouldStartPostcopy(f: Pick<MigrationFigures, 'status' | 'passes'>): boolean {
  return f.status === 'active' && (f.passes ?? 0) >= 2;
}

/** QEMU's statuses after the switch to postcopy that end it without completing (QEMU 7.2 pauses on a lost link). */
export function postcopyBroken(status: string): boolean {
  return status === 'postcopy-paused' || status === 'failed' || status === 'cancelled';
}

/**
 * POSTCOPY_UNAVAILABLE, checked on the destination before anything moves: its QEMU refused the postcopy-ram
 * capability (it tests userfaultfd itself). An unprivileged QEMU (Corral's runs as corral-qemu) may open a
 * userfaultfd only where vm.unprivileged_userfaultfd is 1 (QEMU 7.2 does not use /dev/userfaultfd).
 */
export function postcopyUnavailable(host: string, qemuSays: string, sysctl: string | null): CorralError {
  const why = sysctl === '0' ? `vm.unprivileged_userfaultfd is 0 on host ${host}: its QEMU runs unprivileged and may not use userfaultfd, which postcopy needs on the destination (sysctl -w vm.unprivileged_userfaultfd=1 there allows it, for every unprivileged process)`
    : `the QEMU of host ${host} cannot receive a postcopy migration (userfaultfd${sysctl === null ? ' is not in this kernel' : ' is not usable by it'})`;
  return new CorralError('POSTCOPY_UNAVAILABLE', `postcopy is not available: ${why}; QEMU said: ${qemuSays}. Migrate without --postcopy, or fix the host`, { host, sysctl });
}
