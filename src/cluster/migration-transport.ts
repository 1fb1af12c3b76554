/**
 * A live migration's transport, the controller's part (rules in src/core/migration-transport.ts): before anything
 * moves it reads the cluster's `migration-tls` setting and, when it is on (the default), makes this migration's two
 * pairs from the cluster CA, which it holds: the destination's (serverAuth, CN and DNS SAN its host name, its
 * address's IP) and the source's (clientAuth, CN its host name), both tagged (OU) with a random tag of this
 * migration and valid for a day. Each agent gets its side's pair in the body of its step (incoming, migrate), over
 * the controller's mutual TLS, and hands it to its QEMU for the migration only (src/services/migration-tls.ts).
 *
 * Why not the hosts' own pairs: a QEMU runs guest-facing code unprivileged; a host's agent key in its hands would
 * let a guest that escaped into QEMU speak for the host to the controllers. A migration pair opens nothing but
 * this migration: its O is no Corral role, and the destination lets in only this migration's client name.
 */
import { randomBytes } from 'node:crypto';
import { migrationPeerDn, type ClusterSettings, type MigrationTlsMaterial } from '../core/migration-transport.js';
import { makeMigrationPair, type ClusterCa } from './pki.js';
import type { HostRow } from './cluster-store.js';

/** What each step's body carries for the transport: TLS material for each side, or none (a trusted network). */
export interface TransportPlan {
  tls: boolean;
  /** the destination's incoming body gets `tls` (server side) */
  incoming: { tls?: MigrationTlsMaterial };
  /** the source's migrate body gets `tls` (client side) */
  start: { tls?: MigrationTlsMaterial };
}

export interface TransportDeps {
  ca: ClusterCa;
  settings: () => Promise<ClusterSettings>;
}

export class MigrationTransport {
  constructor(private readonly d: TransportDeps) {}

  /** The plan of a migration from `from` to `to` (whose migration stream comes to `toIp`). */
  async plan(from: HostRow, to: HostRow, toIp: string): Promise<TransportPlan> {
    if (!(await this.d.settings()).migrationTls) return { tls: false, incoming: {}, start: {} };
    const tag = randomBytes(8).toString('hex');
    const [server, client] = await Promise.all([
      makeMigrationPair(this.d.ca, { host: to.name, ips: [toIp], tag, usage: 'server' }),
      makeMigrationPair(this.d.ca, { host: from.name, ips: [], tag, usage: 'client' }),
    ]);
    const caPem = this.d.ca.certPem;
    return {
      tls: true,
      incoming: { tls: { caPem, ...server, peer: migrationPeerDn(from.name, tag) } },
      start: { tls: { caPem, ...client, peer: to.name } },
    };
  }
}
