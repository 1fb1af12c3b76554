/**
 * `corral controller`: the cluster's API over PostgreSQL. It holds nothing of its own but its TLS pair and its
 * token file (in its data dir); what exists, which hosts are in the cluster and their last reports are in the
 * database, so several controllers serve the same cluster side by side. It refuses to start when PostgreSQL cannot
 * be reached (DATABASE_UNAVAILABLE) or the cluster was never initialised (CLUSTER_NOT_INITIALISED).
 * Each controller listens to the cluster's events (for its /v1/events streams) and prunes old ones now and then.
 * With --auto-rebalance it also moves a guest off a host whose memory pressure ballooning cannot relieve.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import pino from 'pino';
import { CorralError } from '../core/errors.js';
import { dataDirFromEnv, dataPaths } from '../core/paths.js';
import { ensureToken } from './token.js';
import { parseListen } from './main.js';
import { closeApi } from '../api/server.js';
import { openClusterDb } from '../cluster/db.js';
import { ClusterStore } from '../cluster/cluster-store.js';
import { ClusterInstances } from '../cluster/cluster-instances.js';
import { ClusterSessions } from '../cluster/cluster-sessions.js';
import { ClusterTokens } from '../cluster/cluster-tokens.js';
import { ClusterAudit } from '../cluster/cluster-audit.js';
import { HaManager } from '../cluster/ha-manager.js';
import { InstanceList } from '../cluster/instance-list.js';
import { ReportReconciler } from '../cluster/report-reconcile.js';
import { AgentClient } from '../cluster/agent-client.js';
import type { Policy } from '../core/placement.js';
import { ensureControllerPair } from '../cluster/controller-tls.js';
import { buildControllerApi, sha256Hex } from '../cluster/controller-api.js';
import { caSha256 } from '../cluster/pki.js';
import { ClusterEvents } from '../cluster/cluster-events.js';
import { EventFeed } from '../cluster/event-feed.js';
import { checkFenceCommand, fenceTimeoutMs } from '../cluster/fence-command.js';
import { Migrator } from '../cluster/migration.js';
import { Rebalancer } from '../cluster/rebalance.js';
import { claimPressureMove, DEFAULT_AUTO_REBALANCE_COOLDOWN_MS, PressureRebalancer } from '../cluster/pressure-rebalance.js';
import { MigrationLocks } from '../cluster/migration-locks.js';
import { MigrationRecovery } from '../cluster/migration-recovery.js';

export interface ControllerOptions {
  database: string;
  /** HOST:PORT of the HTTPS API (people and agents alike) */
  listen: string;
  dataDir?: string;
  /** a host whose last heartbeat is older than this is unreachable (default 15 s; env CORRAL_UNREACHABLE_AFTER_MS) */
  unreachableAfterMs?: number;
  /** run for a host lost while holding HA instances; exit 0 says it is off (env CORRAL_FENCE_COMMAND; ha-manager.ts) */
  fenceCommand?: string;
  /** move a guest off a host whose memory pressure ballooning cannot relieve (env CORRAL_AUTO_REBALANCE=1; pressure-rebalance.ts) */
  autoRebalance?: boolean;
}

/** how often a controller deletes the events past their retention (cluster-events.ts) */
const PRUNE_EVERY_MS = 10 * 60_000;

/** How long a host under memory pressure waits between two guests moved off it (CORRAL_AUTO_REBALANCE_COOLDOWN_S). */
function autoRebalanceCooldownMs(): number {
  const v = process.env.CORRAL_AUTO_REBALANCE_COOLDOWN_S;
  if (v === undefined || v === '') return DEFAULT_AUTO_REBALANCE_COOLDOWN_MS;
  const s = Number(v);
  if (!Number.isFinite(s) || s < 0) throw new CorralError('INVALID_CONFIG', `CORRAL_AUTO_REBALANCE_COOLDOWN_S is a number of seconds, not "${v}"`);
  return s * 1000;
}

/** spread (the default: the host with the most free memory) or pack, from CORRAL_PLACEMENT. */
function placementPolicy(): Policy {
  const p = process.env.CORRAL_PLACEMENT ?? 'spread';
  if (p !== 'spread' && p !== 'pack') throw new CorralError('INVALID_CONFIG', `CORRAL_PLACEMENT is "spread" or "pack", not "${p}"`);
  return p;
}

export async function runController(o: ControllerOptions): Promise<void> {
  const log = pino({ level: process.env.CORRAL_LOG_LEVEL ?? 'info' });
  const dataDir = o.dataDir ?? dataDirFromEnv();
  const where = parseListen(o.listen);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  const paths = dataPaths(dataDir);
  const token = ensureToken(paths.token);
  const fenceCommand = o.fenceCommand ?? (process.env.CORRAL_FENCE_COMMAND || undefined);
  const fence = fenceCommand === undefined ? {} : { fenceCommand: checkFenceCommand(fenceCommand), fenceTimeoutMs: fenceTimeoutMs() };
  const db = await openClusterDb(o.database);
  let closing = false;
  let list: InstanceList | undefined;
  let migrationLocks: MigrationLocks | undefined;
  try {
    const unreachableAfterMs = o.unreachableAfterMs ?? (Number(process.env.CORRAL_UNREACHABLE_AFTER_MS) || 15_000);
    const store = new ClusterStore(db.pool, { unreachableAfterMs });
    const ca = await store.getCa();
    if (!ca) throw new CorralError('CLUSTER_NOT_INITIALISED', 'this database holds no Corral cluster yet: run `corral cluster init --database URL` once, then start the controllers');
    // this controller's token is good on every controller of the cluster
    await store.registerApiToken(`controller ${hostname()} ${o.listen}`, sha256Hex(token));
    const tls = await ensureControllerPair(dataDir, ca, where.host);
    const instances = new ClusterInstances(db.pool, { unreachableAfterMs, policy: placementPolicy() });
    const ha = { leaseMs: unreachableAfterMs, watchdogMs: Number(process.env.CORRAL_WATCHDOG_MS) || 10_000 };
    const audit = new ClusterAudit(db.pool, { warn: (m) => log.warn({}, m) });
    list = new InstanceList(db.pool, { unreachableAfterMs });
    const events = new ClusterEvents(db.pool);
    const feed = new EventFeed(db.pool, events, log);
    await feed.start();
    const agents = new AgentClient({ caPem: ca.certPem, certPem: tls.certPem, keyPem: tls.keyPem });
    const reconciler = new ReportReconciler({ pool: db.pool, agents, log });
    // live migrations: the driver's lock, and the recovery of those nobody drives (env CORRAL_MIGRATION_RECOVERY_MS)
    migrationLocks = new MigrationLocks(db.pool, log);
    const migrationRecovery = new MigrationRecovery({ pool: db.pool, store, instances, agents, events, log, everyMs: Number(process.env.CORRAL_MIGRATION_RECOVERY_MS) || undefined });
    const app = await buildControllerApi({ store, instances, list, reconciler, events, feed, tokens: new ClusterTokens(db.pool), sessions: new ClusterSessions(db.pool), audit, ca, tls, log, ha, migrationLocks, migrationRecovery });
    const haManager = new HaManager(db.pool, store, instances, agents, events, { ...ha, ...fence }, log);
    await app.listen({ host: where.host, port: where.port });
    haManager.start();
    let pressure: PressureRebalancer | undefined;
    if (o.autoRebalance ?? process.env.CORRAL_AUTO_REBALANCE === '1') {
      const cooldownMs = autoRebalanceCooldownMs();
      const migrator = new Migrator({ store, instances, agents, events, log, locks: migrationLocks });
      pressure = new PressureRebalancer({
        feed, events, log, cooldownMs, rebalancer: new Rebalancer({ store, instances, agents, migrator, log }),
        claim: (host, data) => claimPressureMove(db.pool, host, cooldownMs, data),
      });
      pressure.start();
      log.info({ cooldownMs }, 'auto-rebalance: a host whose memory pressure ballooning cannot relieve has a guest moved off it');
    }
    migrationRecovery.start();
    const prune = setInterval(() => void events.prune().catch((e: unknown) => log.warn({ error: (e as Error).message }, 'pruning old cluster events failed')), PRUNE_EVERY_MS);
    prune.unref();
    if (fence.fenceCommand) log.info({ fenceCommand: fence.fenceCommand, timeoutMs: fence.fenceTimeoutMs }, 'a lost host that holds HA instances is fenced by the fence command');
    log.info({ listen: o.listen, tokenFile: paths.token, caFile: tls.caFile, caSha256: caSha256(ca.certPem) },
      `corral controller listening on https://${o.listen} (clients: CORRAL_URL=https://${o.listen} CORRAL_TLS_CA=${tls.caFile} CORRAL_TOKEN=$(cat ${paths.token}))`);
    await new Promise<void>((resolve) => {
      const stop = (sig: string): void => {
        if (closing) return;
        closing = true;
        log.info({ signal: sig }, 'controller stopping; agents and their VMs carry on');
        clearInterval(prune);
        pressure?.stop();
        migrationRecovery.stop();
        void haManager.stop().then(() => closeApi(app, 2000)).then(() => feed.stop()).then(() => resolve());
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  } finally {
    await migrationLocks?.close();
    await list?.close();
    await db.close();
  }
}
