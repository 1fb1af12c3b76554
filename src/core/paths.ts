/** Where everything lives under a data dir. Pure: the data dir comes in as an argument. */
import { join } from 'node:path';

export interface DataPaths {
  root: string;
  db: string;
  socket: string;
  token: string;
  /** the audit log of state-changing and refused API requests (0600; the one before is audit.log.1) */
  audit: string;
  /** the TCP API's self-signed TLS pair, made at first start: tls/server.crt, tls/server.key (0600) */
  tls: { dir: string; cert: string; key: string };
  images: string;
  /** the `default` directory storage pool of volumes */
  volumes: string;
  /** network records and each bridge network's dnsmasq files */
  networks: string;
  /** the vhost-user back ends an admin registered (vhost-user-net NICs name one) */
  vhostUser: string;
  instances: string;
  run: string;
  cache: string;
}

export function dataPaths(root: string): DataPaths {
  return {
    root,
    db: join(root, 'corral.db'),
    socket: join(root, 'corral.sock'),
    token: join(root, 'token'),
    audit: join(root, 'audit.log'),
    tls: { dir: join(root, 'tls'), cert: join(root, 'tls', 'server.crt'), key: join(root, 'tls', 'server.key') },
    images: join(root, 'images'),
    volumes: join(root, 'volumes'),
    networks: join(root, 'networks'),
    vhostUser: join(root, 'vhost-user.json'),
    instances: join(root, 'instances'),
    run: join(root, 'run'),
    cache: join(root, 'cache'),
  };
}

export interface InstancePaths {
  dir: string;
  disk: string;
  runDir: string;
  qmp: string;
  console: string;
  /** the guest agent's channel: a unix socket QEMU serves (the daemon connects) */
  agent: string;
  /** the graphical console: QEMU's VNC server on a unix socket (instances with display vnc; the API proxies it) */
  vnc: string;
  consoleLog: string;
  /** the older part of the console log: console.log past its limit is copied here, then emptied */
  consoleLogRotated: string;
  pidfile: string;
  /** QEMU's stderr of the current (or last) run; the run before is kept as qemu.stderr.1 */
  stderr: string;
  /** why the last QEMU ended (ExitInfo, written at each exit) */
  exitInfo: string;
  status: string;
  efiVars: string;
  /** cloud-init's NoCloud seed disk, written from the spec at each start (instances with spec.cloudInit) */
  seed: string;
}

/** The rotated part of a console log: `console.log.1`. */
export function rotatedLog(log: string): string {
  return `${log}.1`;
}

/** Per-instance files. Runtime sockets sit in a 0700 directory named by the instance uuid. */
export function instancePaths(root: string, uuid: string): InstancePaths {
  const dir = join(root, 'instances', uuid);
  const runDir = join(root, 'run', uuid);
  return {
    dir,
    disk: join(dir, 'root.qcow2'),
    efiVars: join(dir, 'efivars.fd'),
    seed: join(dir, 'seed.iso'),
    runDir,
    qmp: join(runDir, 'qmp.sock'),
    console: join(runDir, 'console.sock'),
    agent: join(runDir, 'qga.sock'),
    vnc: join(runDir, 'vnc.sock'),
    consoleLog: join(dir, 'console.log'),
    consoleLogRotated: rotatedLog(join(dir, 'console.log')),
    pidfile: join(runDir, 'qemu.pid'),
    stderr: join(dir, 'qemu.stderr'),
    exitInfo: join(dir, 'exit.json'),
    status: join(runDir, 'status.json'),
  };
}

export const DEFAULT_DATA_DIR = '/var/lib/corral';

export function dataDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.CORRAL_DATA_DIR && env.CORRAL_DATA_DIR.length > 0 ? env.CORRAL_DATA_DIR : DEFAULT_DATA_DIR;
}
