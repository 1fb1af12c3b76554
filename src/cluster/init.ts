/**
 * `corral cluster init --database URL`: run once per cluster, before its first controller starts (as `pvecm create`
 * or `kubeadm init`). It migrates the database, makes the cluster CA (kept in PostgreSQL: every controller signs
 * with it) and a first join token. A database that already holds a cluster is left as it is (CLUSTER_EXISTS).
 */
import { CorralError } from '../core/errors.js';
import { hashJoinSecret } from '../core/join-token.js';
import { openClusterDb } from './db.js';
import { ClusterStore } from './cluster-store.js';
import { caSha256, makeClusterCa } from './pki.js';
import { newJoinToken } from './join-tokens.js';

export interface ClusterInitResult {
  caSha256: string;
  caPem: string;
  joinToken: string;
  expiresAt: string;
}

export async function initCluster(url: string, ttlSeconds: number): Promise<ClusterInitResult> {
  const db = await openClusterDb(url);
  try {
    const store = new ClusterStore(db.pool);
    const ca = await makeClusterCa();
    if (!(await store.initCa(ca))) {
      throw new CorralError('CLUSTER_EXISTS', 'this database already holds a Corral cluster: start a controller on it (corral controller --database URL --listen HOST:PORT) and make join tokens with corral cluster join-token');
    }
    const hash = caSha256(ca.certPem);
    const t = newJoinToken(hash);
    const { expiresAt } = await store.insertJoinToken({ id: t.id, secretHash: hashJoinSecret(t.secret), ttlSeconds });
    return { caSha256: hash, caPem: ca.certPem, joinToken: t.text, expiresAt };
  } finally {
    await db.close();
  }
}
