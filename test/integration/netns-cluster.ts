/**
 * A cluster of real agents on one machine for live-migration tests: PostgreSQL, a controller on a test bridge, and
 * agents each in a network namespace of its own (a test host, as in scripts/cluster-demo.sh: a veth on the bridge,
 * whose address the controller listens on), all sharing one directory as their shared pool. Hosts must be apart:
 * the guest fence (src/network/guest-fence.ts) refuses QEMU's connections to its own host's addresses, so a
 * migration between two agents on one loopback is refused.
 *
 * The test network has names and a subnet of its own (a user's cluster demo is not touched): the bridge is NET.1
 * (the controller's address), host aN is NET.1N on the eth0 of namespace NETNS-aN.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pgLib from 'pg';
import { Daemon, createNetns, deleteNetns, newDataDir, waitFor } from './harness.js';
import { Controller, freePort, initCluster } from './cluster-harness.js';
import type { TestPostgres } from '../unit/postgres.js';

const ip = (...args: string[]): void => { execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] }); };

/** A /24 of 10.81.x.0 that no local address is in. */
function freeSubnet(): string {
  for (let tries = 0; tries < 50; tries++) {
    const net = `10.81.${randomBytes(1)[0]!}`;
    if (!execFileSync('ip', ['-4', '-o', 'addr', 'show', 'to', `${net}.0/24`], { encoding: 'utf8' }).trim()) return net;
  }
  throw new Error('no free 10.81.x.0/24');
}

export class NetnsCluster {
  pg!: TestPostgres;
  ctl!: Controller;
  shared = '';
  readonly hosts = new Map<string, Daemon>();
  private readonly tag = randomBytes(3).toString('hex');
  private readonly bridge = `crlmig${this.tag}`;
  private readonly netns = `corral-mig-${this.tag}`;
  private net = '';
  private names: string[] = [];

  /** `names`: a1, a2, ... (the digit is the address's last one); `env`: each agent's extra environment, and the controller's. */
  constructor(private readonly agentEnv: NodeJS.ProcessEnv = {}, private readonly controllerEnv: NodeJS.ProcessEnv = {}) {}

  hostIp(n: string): string {
    return `${this.net}.1${n.slice(1)}`;
  }

  host(n: string): Daemon {
    const d = this.hosts.get(n);
    if (!d) throw new Error(`no test host ${n}`);
    return d;
  }

  nsOf(n: string): string {
    return `${this.netns}-${n}`;
  }

  /** PostgreSQL, cluster init, the network, the controller and the agents, until every host is up with the pool and its CPU report. */
  async start(names: string[]): Promise<void> {
    ({ pg: this.pg, shared: this.shared } = await initCluster());
    this.makeNetwork(names);
    this.ctl = new Controller(this.pg.url, await freePort(), this.controllerEnv, `${this.net}.1`);
    await this.ctl.start();
    for (const n of names) await this.startAgent(n);
    // and with the CPU report a migration's destination is checked against (it follows the first probe of QEMU)
    await waitFor(async () => (await this.ctl.json(['host', 'list'])).filter((h: any) => h.state === 'up' && h.sharedPool === this.shared && h.cpuReport).length === names.length,
      30_000, `${names.length} hosts up with the shared pool and their CPU reports`);
  }

  /** Join (or, for a host already made, start again: it joined already) the agent of test host `n`. */
  async startAgent(n: string): Promise<Daemon> {
    let d = this.hosts.get(n);
    const args = ['--listen', `${this.hostIp(n)}:8444`, '--shared-pool', this.shared];
    if (!d) {
      const token = JSON.parse((await this.ctl.cli(['cluster', 'join-token', '--json'])).stdout).token;
      d = new Daemon(newDataDir(), [], { CORRAL_HEARTBEAT_MS: '500', ...this.agentEnv }, { command: 'agent', netns: this.nsOf(n) });
      d.extraArgs = ['--join', this.ctl.url, '--token', token, '--name', n, ...args];
      this.hosts.set(n, d);
    } else {
      d.extraArgs = args;
    }
    await d.start();
    return d;
  }

  /** Everything stopped and removed; every QEMU left with a disk of the shared pool is killed. */
  async stop(): Promise<void> {
    for (const d of this.hosts.values()) await d.destroy();
    if (this.shared) for (const c of this.qemus()) process.kill(c.pid, 'SIGKILL');
    await this.ctl?.destroy();
    if (this.net) this.removeNetwork();
    await this.pg?.stop();
    if (this.shared) rmSync(this.shared, { recursive: true, force: true });
  }

  /** The CLI through the controller, which must succeed, its --json answer parsed. */
  ok(args: string[]): Promise<any> {
    return this.ctl.json(args);
  }

  /** The host the cluster places the instance on. */
  async hostOf(name: string): Promise<string | undefined> {
    const l = await this.ok(['list']);
    return (Array.isArray(l) ? l : l.instances).find((i: any) => i.name === name)?.host;
  }

  /** The cluster's events of an instance, as the controllers recorded them. */
  async eventsOf(name: string): Promise<Array<{ type: string; data: any }>> {
    return this.query('SELECT type, data FROM events WHERE instance = $1 ORDER BY id', [name]);
  }

  /** An instance's row in the cluster database: its host and the host a migration marks it as moving to. */
  async rowOf(name: string): Promise<{ host: string; migrating_to: string | null } | undefined> {
    return (await this.query<{ host: string; migrating_to: string | null }>('SELECT host, migrating_to FROM instances WHERE name = $1', [name]))[0];
  }

  private async query<R extends pgLib.QueryResultRow = any>(sql: string, params: unknown[]): Promise<R[]> {
    const c = new pgLib.Client({ connectionString: this.pg.url });
    await c.connect();
    try {
      return (await c.query<R>(sql, params)).rows;
    } finally {
      await c.end();
    }
  }

  /**
   * The QEMUs on this machine of this cluster's hosts (their argv names a host's data dir or the shared pool), with
   * the host whose data dir they use; `file`: only those whose argv names that path (an instance's disk).
   */
  qemus(file?: string): Array<{ pid: number; host: string }> {
    const out: Array<{ pid: number; host: string }> = [];
    for (const d of readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8');
        if (!(argv.startsWith('qemu-system') || argv.includes('/qemu-system'))) continue;
        const host = [...this.hosts].find(([, h]) => argv.includes(h.dataDir))?.[0];
        if (file !== undefined ? !argv.includes(file) : host === undefined && !argv.includes(this.shared)) continue;
        out.push({ pid: Number(d), host: host ?? '?' });
      } catch {
        /* gone */
      }
    }
    return out;
  }

  /** The QEMUs that have an instance's shared-pool root disk open. */
  copiesOf(name: string): Array<{ pid: number; host: string }> {
    return this.qemus(join(this.shared, 'instances', name, 'root.qcow2'));
  }

  private makeNetwork(names: string[]): void {
    this.names = names;
    this.net = freeSubnet();
    ip('link', 'add', 'name', this.bridge, 'type', 'bridge');
    ip('addr', 'add', `${this.net}.1/24`, 'dev', this.bridge);
    ip('link', 'set', 'dev', this.bridge, 'up');
    for (const n of names) {
      const ns = this.nsOf(n);
      createNetns(ns);
      ip('link', 'add', 'name', `${this.bridge}${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('link', 'set', 'dev', `${this.bridge}${n}`, 'master', this.bridge, 'up');
      ip('-n', ns, 'addr', 'add', `${this.hostIp(n)}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
    }
  }

  /** Delete the namespaces (their eth0 takes its veth peer along) and the bridge; what is missing is fine. */
  private removeNetwork(): void {
    for (const n of this.names) deleteNetns(this.nsOf(n));
    for (const dev of [...this.names.map((n) => `${this.bridge}${n}`), this.bridge]) {
      try {
        ip('link', 'del', 'dev', dev);
      } catch {
        /* not there */
      }
    }
  }
}

/** The guest's boot id (the same after a live migration: it was never restarted). */
export const bootId = async (d: Daemon, name: string): Promise<string> => /([0-9a-f-]{36})/.exec(await d.guest(name, 'cat /proc/sys/kernel/random/boot_id'))![1]!;

/** The last `tick N` of a console log (-1: none). */
export const lastTick = (log: string): number => Math.max(-1, ...[...log.matchAll(/tick (\d+)/g)].map((m) => Number(m[1])));

/** Starts a counter on the guest's console: `tick N` once a second. */
export const startCounter = (d: Daemon, name: string): Promise<string> => d.guest(name, 'sh -c \'i=0; while :; do echo tick $i; i=$((i+1)); sleep 1; done\' & true');
