/**
 * The composition root: builds the store, drivers and services, adopts running QEMUs, and serves the API on
 * the unix socket (and on TCP with a bearer token when asked). QEMU processes outlive the daemon.
 */
import { QemuDriver } from '../qemu/driver.js';
import { DNSMASQ_USER, assertReachable, ensureSystemUser, qemuRunAs } from '../host/run-as.js';
import { vmFileHooks } from '../services/vm-files.js';
import { cloudInitHooks } from '../services/cloud-init.js';
import { Reserve, RESERVE_BYTES } from '../host/reserve.js';
import { spaceOf } from '../host/space.js';
import { pidAlive } from '../services/sweep.js';
import { chmodSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { ensureToken } from './token.js';
import { ensureTlsPair, loadTlsPair, type TlsPair } from './tls.js';
import { SharedPool } from '../services/shared-pool.js';
import { dirname, join } from 'node:path';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { CorralError } from '../core/errors.js';
import { dataDirFromEnv, dataPaths } from '../core/paths.js';
import type { Accelerator } from '../core/spec.js';
import { SqliteStore } from '../store/sqlite.js';
import { EventBus } from '../services/events.js';
import { HostService } from '../services/host.js';
import { HostReporter } from '../services/host-report.js';
import { ImageService } from '../services/images.js';
import { InstanceService } from '../services/instances.js';
import { InstanceConfigService } from '../services/instance-config.js';
import { CpuService } from '../services/cpu.js';
import { MemoryService } from '../services/memory.js';
import { VolumeService } from '../services/volumes.js';
import { probeBlockIo } from '../qemu/probe-block.js';
import { NicService, networkDirectory } from '../services/nics.js';
import { DiskService } from '../services/disks.js';
import { NetworkService } from '../services/networks.js';
import { LinuxNetworkHost } from '../network/host.js';
import { ensureTunOpenable } from '../network/tap.js';
import { NetworkStore } from '../network/store.js';
import { VhostUserStore } from '../network/vhost-user-store.js';
import { freePort, MigrationService } from '../services/migration.js';
import { MetricsService } from '../services/metrics.js';
import { HistoryService, historyStepFrom } from '../services/history.js';
import { MigrationRecoveryService } from '../services/migration-recovery.js';
import { MigrationDiskService } from '../services/migration-disks.js';
import { CopyService, dropUnrecorded } from '../services/copies.js';
import { ExportService } from '../services/export.js';
import { ArchiveImporter } from '../services/import-archive.js';
import { ImageTransfer } from '../services/image-transfer.js';
import { GuestAgentService } from '../services/guest-agent.js';
import { SnapshotService } from '../services/snapshots.js';
import { VhostUserService } from '../services/vhost-user.js';
import { StorageDaemonService } from '../services/storage-daemons.js';
import { PassthroughService } from '../services/passthrough.js';
import { TokenService } from '../services/tokens.js';
import { AuditLog } from '../services/audit.js';
import { consoleLogHooks, consoleLogLimit } from '../services/console-log.js';
import { VolumeStore } from '../storage/volumes.js';
import { PressureController, pressureConfigFrom } from '../services/pressure.js';
import { readMemInfo } from '../host/basics.js';
import { ImageStore } from '../storage/images.js';
import { buildApi, closeApi } from '../api/server.js';
import { validatePoolConfig, type PoolConfig } from '../core/pool.js';
import { AgentLink, identityDir, joinCluster, loadIdentity, type AgentIdentity } from '../cluster/agent-link.js';
import { controllerCaller } from '../cluster/controller-peer.js';
import { agentLinkHooks } from '../cluster/agent-hooks.js';

export interface DaemonOptions {
  dataDir?: string;
  /** HOST:PORT to also listen on TCP (TLS and a bearer token required). */
  listen?: string;
  /** the TCP listener's certificate and key (PEM files); without them the data dir's self-signed pair */
  tlsCert?: string;
  tlsKey?: string;
  accel?: Accelerator;
  /** Resource pool settings (ratios, memory reserved for the host); env CORRAL_CPU_RATIO etc. otherwise. */
  pool?: { cpuRatio?: number; memoryRatio?: number; reservedMemory?: string | number };
  /** the shared storage pool's mount point (env CORRAL_SHARED_POOL): root disks of `pool: shared` instances */
  sharedPool?: string;
  /** serve GET /metrics on the TCP listener without a token */
  metricsPublic?: boolean;
  /** run as a cluster agent (`corral agent`): join with a token first, or use the identity a join left */
  agent?: { join?: { url: string; token: string; labels?: Record<string, string> }; name?: string; version: string };
}

/**
 * Pool settings from options, then the environment (CORRAL_CPU_RATIO, CORRAL_MEMORY_RATIO, CORRAL_RESERVED_MEMORY).
 * The ratios are numbers; the reserve is a size with a unit like any other ("512M"; "0" is none): a bare
 * "536870912" is refused (INVALID_SPEC), as `--size 1000` is, rather than read as bytes.
 */
export function poolConfigFrom(opts: DaemonOptions['pool'], env: NodeJS.ProcessEnv = process.env): PoolConfig {
  const raw: Record<string, unknown> = {};
  const given = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const num = (v: string | undefined): number | string | undefined => (given(v) === undefined ? undefined : Number.isNaN(Number(v)) ? v : Number(v));
  const cpu = opts?.cpuRatio ?? num(env.CORRAL_CPU_RATIO);
  const mem = opts?.memoryRatio ?? num(env.CORRAL_MEMORY_RATIO);
  const res = opts?.reservedMemory ?? given(env.CORRAL_RESERVED_MEMORY);
  if (cpu !== undefined) raw.cpuRatio = cpu;
  if (mem !== undefined) raw.memoryRatio = mem;
  if (res !== undefined) raw.reservedMemory = res;
  return validatePoolConfig(raw, 'pool.');
}

function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.on('connect', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

/**
 * Remember which file the API socket is, right after listening on it. `release()` unlinks it only if it is still
 * that file: a new daemon started while this one was stopping has replaced it with its own, which must stay.
 */
export function claimSocket(path: string): { release(): boolean } {
  const { ino, dev } = statSync(path);
  return {
    release: () => {
      try {
        const now = statSync(path);
        if (now.ino !== ino || now.dev !== dev) return false;
        rmSync(path, { force: true });
        return true;
      } catch {
        return false; // gone already
      }
    },
  };
}

export { ensureToken } from './token.js';

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[2]);
  if (!m || !m[1] || port < 1 || port > 65535) throw new CorralError('INVALID_SPEC', `--listen wants HOST:PORT, got "${listen}"`, { field: 'listen' });
  return { host: m[1].replace(/^\[(.*)\]$/, '$1'), port };
}

/** The cluster identity of an agent: the one a join left in the data dir, or a new one from --join. */
async function agentIdentity(dataDir: string, a: NonNullable<DaemonOptions['agent']>, listen: string | undefined, log: pino.Logger): Promise<AgentIdentity> {
  if (a.join) {
    const id = await joinCluster(dataDir, { url: a.join.url, token: a.join.token, name: a.name ?? hostname(), address: listen ? `https://${listen}` : '', agentVersion: a.version, ...(a.join.labels ? { labels: a.join.labels } : {}) });
    log.info({ host: id.name, uuid: id.uuid, controller: a.join.url }, 'joined the cluster');
    return id;
  }
  const id = loadIdentity(dataDir);
  if (!id) throw new CorralError('NOT_JOINED', `this host has not joined a cluster (no ${dataDir}/cluster/cluster.json): start it once with corral agent --join https://CONTROLLER:PORT --token TOKEN`);
  if (a.name && a.name !== id.name) throw new CorralError('INVALID_SPEC', `--name ${a.name}: this host joined the cluster as "${id.name}"`, { field: 'name' });
  return id;
}

/** An agent's TLS pair for its TCP API: its cluster certificate (sent with the CA's) and key. */
function identityPair(dataDir: string, id: AgentIdentity): TlsPair {
  const dir = identityDir(dataDir);
  const pair = loadTlsPair(join(dir, 'agent.crt'), join(dir, 'agent.key'));
  return { ...pair, cert: `${id.certPem.trim()}\n${id.caPem.trim()}\n` };
}

export async function runDaemon(opts: DaemonOptions = {}): Promise<void> {
  const dataDir = opts.dataDir ?? dataDirFromEnv();
  const paths = dataPaths(dataDir);
  const log = pino({ level: process.env.CORRAL_LOG_LEVEL ?? 'info' });
  const envAccel = process.env.CORRAL_ACCEL;
  const force = opts.accel ?? (envAccel === 'kvm' || envAccel === 'tcg' ? envAccel : undefined);
  const poolConfig = poolConfigFrom(opts.pool);

  // QEMU's user opens files under the data dir, instances/, run/ and volumes/ (each given to it by name; it can
  // list none of these dirs) and reads images/; networks/ and cache/ stay the daemon's.
  const dirModes: Array<[string, number]> = [
    [dataDir, 0o711], [paths.instances, 0o711], [paths.run, 0o711], [paths.volumes, 0o711], [paths.images, 0o755],
    [paths.networks, 0o700], [paths.cache, 0o700],
  ];
  for (const [d, mode] of dirModes) {
    mkdirSync(d, { recursive: true, mode });
    chmodSync(d, mode);
  }
  // What the TCP listener needs comes first: a daemon that cannot serve TCP with auth refuses to start at all,
  // before it opens the store, adopts a VM or binds a socket.
  // An agent joins before anything else: a refused join leaves the host as it was.
  const identity = opts.agent ? await agentIdentity(dataDir, opts.agent, opts.listen, log) : undefined;
  let tcp: (ReturnType<typeof parseListen> & { token: string; tls: TlsPair; ca?: string }) | undefined;
  if (opts.listen && identity) {
    // a cluster agent serves TCP with its cluster certificate, and takes controllers' client certificates
    const where = parseListen(opts.listen);
    tcp = { ...where, token: ensureToken(paths.token), tls: identityPair(dataDir, identity), ca: identity.caPem };
  } else if (opts.listen) {
    const where = parseListen(opts.listen);
    tcp = { ...where, token: ensureToken(paths.token), tls: await ensureTlsPair(dataDir, { cert: opts.tlsCert, key: opts.tlsKey }, where.host) };
  } else if (opts.tlsCert !== undefined || opts.tlsKey !== undefined) {
    throw new CorralError('INVALID_SPEC', '--tls-cert and --tls-key are for the TCP listener: give --listen HOST:PORT too', { field: 'listen' });
  }
  // QEMU and its storage daemons run as corral-qemu, dnsmasq drops to corral-dnsmasq (src/host/run-as.ts)
  const qemuUser = await qemuRunAs();
  assertReachable(dataDir, qemuUser);
  await ensureSystemUser(DNSMASQ_USER);
  if (ensureTunOpenable()) log.info('made /dev/net/tun 0666, as udev does on standard hosts: QEMU opens the taps made for its user there');
  // what the daemon makes is its own unless it says otherwise (images are 0644, the files QEMU gets are handed over)
  process.umask(0o077);
  if (await socketInUse(paths.socket)) throw new CorralError('ALREADY_EXISTS', `another corral daemon is already serving ${paths.socket}`, { socket: paths.socket });
  rmSync(paths.socket, { force: true });

  // room of last resort for the daemon's own writes when a guest's thin disk fills the filesystem (host/reserve.ts)
  const reserve = new Reserve(join(dataDir, '.reserve'));
  if (!reserve.ensure()) log.warn({ file: reserve.file }, 'no room for the data dir\'s 16 MiB reserve: the filesystem is (nearly) full');
  const store = new SqliteStore(paths.db, {
    onFull: () => {
      const freed = reserve.release();
      if (freed) log.warn({ dir: dataDir }, 'the data dir\'s filesystem is full: gave up the 16 MiB reserve so that the daemon can record what happens');
      return freed;
    },
  });
  const keepReserve = setInterval(() => {
    if (!reserve.held() && spaceOf(dataDir).free > 4 * RESERVE_BYTES && reserve.ensure()) log.info('the data dir\'s reserve is made again');
  }, 30_000);
  keepReserve.unref();
  const sharedDir = opts.sharedPool ?? (process.env.CORRAL_SHARED_POOL || undefined);
  const sharedPool = sharedDir ? new SharedPool(sharedDir) : undefined;
  const events = new EventBus(store, log);
  const imageStore = new ImageStore(dataDir);
  const host = new HostService(imageStore, force, qemuUser);
  const [caps, blockIo] = await Promise.all([host.capabilities(), probeBlockIo(paths.volumes, undefined, undefined, qemuUser)]);
  log.info({ direct: blockIo.direct, aio: blockIo.aio }, blockIo.reason);
  const limits = host.limits();
  const instances = new InstanceService({
    dataDir, store, images: imageStore, events, host: limits, log,
    pool: { host: limits, config: poolConfig },
    accelerator: async () => (await host.accelerator()).accel,
    driver: new QemuDriver({ version: () => caps.version, runAs: qemuUser, consoleLogLimit: consoleLogLimit(), log }), blockIo,
    ...(sharedPool ? { sharedPool } : {}),
  });
  const config = new InstanceConfigService({ instances, events, host: limits });
  const cpu = new CpuService({ instances, config, events, hostCpus: limits.cpuList, log });
  instances.addHooks('cpu', cpu.hooks());
  const images = new ImageService(dataDir, imageStore, store, events);
  const memory = new MemoryService({ instances, config, events, log });
  const volumes = new VolumeService(new VolumeStore(dataDir), events);
  instances.addHooks('memory', memory.hooks());
  instances.addHooks('files', vmFileHooks(qemuUser, (row) => instances.paths(row)));
  instances.addHooks('cloud-init', cloudInitHooks(qemuUser, (row) => instances.paths(row)));
  const storageDaemons = new StorageDaemonService({ instances, events, log, blockIo, runRoot: paths.run, runAs: qemuUser });
  instances.addHooks('storage-daemons', storageDaemons.hooks());
  const disks = new DiskService({ instances, volumes, events, log, blockIo, storageDaemons, runAs: qemuUser });
  instances.addHooks('disks', disks.hooks());
  const networks = new NetworkService({
    store: new NetworkStore(dataDir), host: new LinuxNetworkHost('/proc', { tap: qemuUser, dnsmasq: DNSMASQ_USER }), events, log,
  });
  const vhostUser = new VhostUserService({ store: new VhostUserStore(dataDir), dataDir, events });
  // PCI passthrough and SR-IOV VFs: sysfs at $CORRAL_SYSFS_ROOT (default /sys), /dev at $CORRAL_DEV_ROOT (default /dev).
  const passthrough = new PassthroughService({ instances, dataDir, events, log, runAs: qemuUser });
  const nics = new NicService({ instances, networks: networkDirectory(networks), events, log, sriovPf: (pf) => passthrough.checkPf(pf), vhostUser });
  instances.addHooks('nics', nics.hooks());
  instances.addHooks('passthrough', passthrough.hooks());
  const guestAgent = new GuestAgentService({ instances });
  instances.addHooks('guest-agent', guestAgent.hooks());
  instances.setGuestShutdown((row, timeoutMs) => guestAgent.shutdown(row, timeoutMs));
  const snapshots = new SnapshotService({ instances, volumes: (row) => disks.resolve(row), agent: guestAgent, events, log });
  instances.addHooks('snapshots', snapshots.hooks());
  instances.addHooks('console-log', consoleLogHooks()); // the order the hooks run in is HOOK_ORDER (instance-hooks.ts)
  networks.setInUse((network) => nics.usersOf(network));
  networks.setReservations((network) => nics.reservationsOn(network));
  vhostUser.setUsers((backend) => nics.backendUsers(backend));
  nics.assignAddresses(); // NICs stored before Corral reserved addresses get one, before dnsmasq is told them
  await networks.restore(); // bridges, firewall and dnsmasq back after a reboot; a running dnsmasq is adopted
  await instances.reconcile();
  // storage daemons no instance owns (a daemon killed between starting one and starting its QEMU)
  await storageDaemons.sweepOrphans();
  // what crashed work left: staging folders, records apart, taps no VM needs (reconcile has adopted what lives)
  const swept = [...imageStore.sweep(pidAlive), ...volumes.store.sweep(pidAlive), ...(await dropUnrecorded(volumes, new Set(instances.listRows().map((r) => r.uuid)))), ...disks.alignAttachments(), ...(await nics.sweepTaps()), ...(await snapshots.reconcile())];
  if (swept.length > 0) log.warn({ swept }, 'cleaned up after work a crash cut short');
  await nics.restoreTaps(); // the layer-2 filter of every tap still on the host (the sweep has removed stray ones), from the records
  disks.settleAccess(); // volumes open to QEMU's user only while a live VM has them (a crash may have left one)
  // Memory pressure: env CORRAL_PRESSURE_INTERVAL / _THRESHOLD / _HYSTERESIS / _STEP (see services/pressure.ts).
  const pressure = new PressureController(pressureConfigFrom(process.env, readMemInfo().total), {
    events, log, instances: () => store.listInstances(['running']),
    snapshot: (row) => memory.balloonSnapshot(row), setBalloon: (name, bytes) => memory.setBalloon(name, bytes),
  });
  pressure.start();
  void host.accelerator().then((d) => log.info({ accel: d.accel, reason: d.reason }, 'accelerator chosen'));

  const servers: FastifyInstance[] = [];
  // local disks that move with a live migration, and the base image a destination may lack (migration-disks.ts)
  const transfer = new ImageTransfer({ images: imageStore, events, removeImage: (name) => images.remove(name), log });
  const migrationDisks = new MigrationDiskService({ dataDir, instances, volumes, images: imageStore, transfer, freePort, log });
  const migration = new MigrationService({ instances, events, log, disks: migrationDisks, snapshots: (name) => snapshots.names(name), runAs: qemuUser, ...(identity ? { hostName: identity.name } : {}) });
  const migrationRecovery = new MigrationRecoveryService({ instances, migration, events, log });
  // what live migrations left while the agent was down (migration-recovery.ts)
  await migrationRecovery.init();
  const copies = new CopyService({ dataDir, instances, images: imageStore, volumes, snapshots, events, runAs: qemuUser });
  const exports = new ExportService({ dataDir, instances, images: imageStore, volumes, snapshots, transfer, events, runAs: qemuUser });
  const archiveImport = new ArchiveImporter({ dataDir, instances, images: imageStore, volumes, transfer, events });
  const unloaded = exports.sweep(); // archives an earlier daemon prepared: their download went with it
  if (unloaded.length > 0) log.info({ removed: unloaded }, 'removed archives prepared and never downloaded');
  const metrics = new MetricsService({ instances, guestNics: (row) => guestAgent.nicCounters(row) });
  // the charts' history: one pass over every instance each CORRAL_HISTORY_STEP_MS (5 s), an hour kept (services/history.ts)
  const history = new HistoryService({ samples: () => metrics.samples(), stepMs: historyStepFrom(process.env), onError: (e) => log.warn({ err: e }, 'history: a pass failed') });
  history.start();
  const services = { instances, config, images, host, events, cpu, memory, volumes, disks, nics, networks, passthrough, vhostUser, tokens: new TokenService(store), guestAgent, snapshots, migration, migrationRecovery, migrationDisks, metrics, history, copies, exports, archiveImport };
  // state-changing requests on both listeners, and refused ones on TCP; a failing write is said on stderr, never fatal
  const audit = new AuditLog(paths.audit);
  const unixApi = await buildApi(services, { audit });
  // Listen on a private name, then rename the socket into place: the socket appears whole (mode 0600, accepting),
  // and since libuv unlinks a listening socket by the name it was bound to when it closes, this daemon's close
  // can never unlink a socket a newer daemon has put at corral.sock meanwhile.
  const bound = join(dirname(paths.socket), `.s${process.pid}`); // never longer than corral.sock's path
  rmSync(bound, { force: true });
  const oldMask = process.umask(0o177);
  try {
    await unixApi.listen({ path: bound });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(bound, 0o600);
  renameSync(bound, paths.socket);
  const socketFile = claimSocket(paths.socket);
  servers.push(unixApi);
  log.info({ socket: paths.socket, dataDir }, 'corral daemon listening');

  if (tcp) {
    const tcpApi = await buildApi(services, {
      token: tcp.token, tls: { cert: tcp.tls.cert, key: tcp.tls.key, ...(tcp.ca ? { ca: tcp.ca } : {}) }, audit, metricsPublic: opts.metricsPublic === true,
      ...(tcp.ca ? { peer: controllerCaller(tcp.ca) } : {}),
    });
    await tcpApi.listen({ host: tcp.host, port: tcp.port });
    servers.push(tcpApi);
    const { certFile, fingerprint, made } = tcp.tls;
    log.info({ listen: opts.listen, tokenFile: paths.token, certFile, fingerprint, made },
      `corral daemon listening on TCP with TLS (bearer token required: the token file's, or one from corral token create); certificate SHA-256 fingerprint ${fingerprint} (clients: CORRAL_URL=https://${opts.listen} CORRAL_TLS_FINGERPRINT=${fingerprint})`);
  }
  const started = events.publish('daemon.started', null, { pid: process.pid });
  const link = identity && opts.agent
    ? new AgentLink(identity, agentLinkHooks({
      instances, store, events, firstEventId: started.id, version: opts.agent.version, sharedPool: sharedPool?.dir ?? null, log, migrations: migrationRecovery,
      reporter: new HostReporter(host, { ...(qemuUser ? { runAs: qemuUser } : {}), log }),
    }), log, dataDir)
    : undefined;
  link?.start();

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'shutting down; virtual machines keep running');
      pressure.stop();
      history.stop();
      link?.stop();
      clearInterval(keepReserve);
      instances.detachAll();
      storageDaemons.detachAll();
      // Open event streams get this as their last event; then they and the console websockets are closed, and
      // any connection still open after 2 s is cut, so the daemon is gone within a few seconds whatever clients do.
      events.publish('daemon.stopping', null, { pid: process.pid, signal: sig });
      void Promise.all(servers.map((s) => closeApi(s, 2000))).then((closed) => {
        if (closed.includes(false)) log.warn('the API did not close in time; exiting anyway');
        store.close();
        audit.close();
        if (!socketFile.release()) log.info({ socket: paths.socket }, 'the API socket is another daemon\'s now; left in place');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
