/**
 * GET /metrics: Prometheus's text format (prom-client), named by Prometheus's conventions (a unit suffix, `_total`
 * on counters). Two parts:
 * - the process's own, kept in one registry for the whole process: each request's duration by method, route pattern
 *   and status (`corral_http_request_duration_seconds`: the route as matched, never the URL, so names cannot grow the
 *   label set) and the daemon process's CPU time, memory and start time (`corral_daemon_*`: prom-client's default
 *   set is not used, its `nodejs_active_*_total` gauges fail promtool's lint);
 * - the host's, read at scrape time into a registry of its own (src/services/metrics.ts): each instance's state,
 *   CPU, memory, disk and NIC figures, labelled by name and uuid (a bounded set: one series per instance, disk, NIC
 *   or vCPU; a NIC's also by the source of its counters, tap or guest-agent), and the pool's capacity and allocation.
 * The role is viewer's; `corral daemon --metrics-public` serves it without a token on TCP (nothing else).
 */
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolView } from '../core/pool.js';
import type { InstanceSample } from '../services/metrics.js';

let processRegistry: Registry | null = null;
let requestSeconds: Histogram<'method' | 'route' | 'status_code'> | null = null;

/** The daemon process's own figures, read at each scrape. */
function daemonProcessMetrics(registers: Registry[]): void {
  new Counter({
    name: 'corral_daemon_cpu_seconds_total', help: 'CPU time of the daemon process, user and system', registers,
    collect() { const u = process.cpuUsage(); this.reset(); this.inc((u.user + u.system) / 1e6); },
  });
  new Gauge({ name: 'corral_daemon_resident_memory_bytes', help: 'Resident memory of the daemon process', registers, collect() { this.set(process.memoryUsage().rss); } });
  new Gauge({ name: 'corral_daemon_heap_used_bytes', help: 'JavaScript heap in use in the daemon process', registers, collect() { this.set(process.memoryUsage().heapUsed); } });
  const started = Date.now() / 1000 - process.uptime();
  new Gauge({ name: 'corral_daemon_start_time_seconds', help: 'When the daemon process started, seconds since the epoch', registers }).set(Math.round(started));
}

/** The process's registry (made once): request durations and the daemon process's figures. */
export function processMetrics(): { registry: Registry; requests: Histogram<'method' | 'route' | 'status_code'> } {
  if (!processRegistry || !requestSeconds) {
    processRegistry = new Registry();
    daemonProcessMetrics([processRegistry]);
    requestSeconds = new Histogram({
      name: 'corral_http_request_duration_seconds', help: 'Time to answer an API request, by method, route pattern and status',
      labelNames: ['method', 'route', 'status_code'], registers: [processRegistry],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    });
  }
  return { registry: processRegistry, requests: requestSeconds };
}

/** Each answered request's duration, by its route's pattern (`unmatched` for a 404 on no route). */
export function installRequestMetrics(app: FastifyInstance): void {
  const { requests } = processMetrics();
  app.addHook('onResponse', async (req, reply) => {
    // websockets and streams end much later; their opening is what counts here
    requests.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });
}

const ID = ['name', 'uuid'] as const;

/** The host's figures as a registry of their own (made for one scrape). */
export function hostRegistry(samples: readonly InstanceSample[], pool: PoolView): Registry {
  const r = new Registry();
  const registers = [r];
  const g = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> => new Gauge({ name, help, labelNames, registers });
  const c = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> => new Counter({ name, help, labelNames, registers });

  const state = g('corral_instance_state', 'The instance\'s state: 1 for the state it is in', [...ID, 'state']);
  const vcpus = g('corral_instance_vcpus', 'vCPUs configured', ID);
  const memConf = g('corral_instance_memory_configured_bytes', 'Guest memory configured (boot memory)', ID);
  const memRes = g('corral_instance_memory_resident_bytes', 'Host memory resident for the QEMU process (Rss)', ID);
  const memGuest = g('corral_instance_memory_guest_resident_bytes', 'Host memory resident for guest RAM alone: the Rss of the QEMU mappings that back it (smaps)', ID);
  const balloon = g('corral_instance_memory_balloon_bytes', 'Guest memory the balloon leaves the guest (query-balloon actual)', ID);
  const cpu = c('corral_instance_cpu_seconds_total', 'Host CPU time of the QEMU process, user and system, all threads', ID);
  const vcpu = c('corral_instance_vcpu_seconds_total', 'Host CPU time of each vCPU thread, user and system', [...ID, 'vcpu']);
  const disk = [...ID, 'device'] as const;
  const rdB = c('corral_instance_disk_read_bytes_total', 'Bytes read by the guest from the disk', disk);
  const wrB = c('corral_instance_disk_written_bytes_total', 'Bytes written by the guest to the disk', disk);
  const rdO = c('corral_instance_disk_reads_total', 'Read operations of the guest on the disk', disk);
  const wrO = c('corral_instance_disk_writes_total', 'Write operations of the guest on the disk', disk);
  const nic = [...ID, 'nic', 'source'] as const;
  const from = '; source="tap": counted by the host\'s tap, "guest-agent": reported by the guest (a NIC with no tap: user-mode networking)';
  const rxB = c('corral_instance_network_receive_bytes_total', `Bytes the guest received on the NIC${from}`, nic);
  const txB = c('corral_instance_network_transmit_bytes_total', `Bytes the guest sent on the NIC${from}`, nic);
  const rxP = c('corral_instance_network_receive_packets_total', `Packets the guest received on the NIC${from}`, nic);
  const txP = c('corral_instance_network_transmit_packets_total', `Packets the guest sent on the NIC${from}`, nic);

  for (const s of samples) {
    const id = { name: s.name, uuid: s.uuid };
    state.set({ ...id, state: s.state }, 1);
    vcpus.set(id, s.vcpus);
    memConf.set(id, s.memoryConfigured);
    if (s.residentBytes !== null) memRes.set(id, s.residentBytes);
    if (s.guestResidentBytes !== null) memGuest.set(id, s.guestResidentBytes);
    if (s.balloonBytes !== null) balloon.set(id, s.balloonBytes);
    if (s.cpuSeconds !== null) cpu.inc(id, s.cpuSeconds);
    for (const v of s.vcpuSeconds) vcpu.inc({ ...id, vcpu: String(v.vcpu) }, v.seconds);
    for (const b of s.blocks) {
      const l = { ...id, device: b.device };
      rdB.inc(l, b.readBytes);
      wrB.inc(l, b.writeBytes);
      rdO.inc(l, b.readOps);
      wrO.inc(l, b.writeOps);
    }
    for (const n of s.nics) {
      const l = { ...id, nic: n.nic, source: n.source };
      rxB.inc(l, n.rxBytes);
      txB.inc(l, n.txBytes);
      rxP.inc(l, n.rxPackets);
      txP.inc(l, n.txPackets);
    }
  }

  g('corral_pool_capacity_vcpus', 'vCPUs the pool can give (host CPU threads x the CPU ratio)', []).set(pool.capacity.cpus);
  g('corral_pool_allocated_vcpus', 'vCPUs given to instances', []).set(pool.allocated.cpus);
  g('corral_pool_capacity_memory_bytes', 'Guest memory the pool can give (host memory x the memory ratio, less the reserve)', []).set(pool.capacity.memory);
  g('corral_pool_allocated_memory_bytes', 'Guest memory given to instances', []).set(pool.allocated.memory);
  g('corral_pool_instances', 'Instances the pool counts', []).set(pool.allocated.instances);
  const ratio = g('corral_pool_overcommit_ratio', 'The pool\'s overcommit ratio of each resource', ['resource']);
  ratio.set({ resource: 'cpu' }, pool.ratios.cpu);
  ratio.set({ resource: 'memory' }, pool.ratios.memory);
  g('corral_pool_reserved_memory_bytes', 'Host memory kept back from guests', []).set(pool.reservedMemory);
  return r;
}

/** GET /metrics on an app: `host` gives the host's registry of this scrape. */
export function metricsRoute(host: () => Promise<Registry>) {
  return async (app: FastifyInstance): Promise<void> => {
    app.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      const merged = Registry.merge([processMetrics().registry, await host()]);
      void reply.type(merged.contentType);
      return merged.metrics();
    });
  };
}
