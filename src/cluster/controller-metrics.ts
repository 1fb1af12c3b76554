/**
 * A controller's GET /metrics: the cluster's hosts, by state and each with its capacity (as its agent last reported
 * it) and what the instances placed on it reserve, labelled by host name (bounded by the hosts); and the controller
 * process's own figures and request latency (src/api/metrics.ts). Each instance's own figures come from its host's
 * agent (its /metrics), which Prometheus scrapes where the instance runs.
 */
import { Gauge, Registry } from 'prom-client';
import { HOST_STATES } from '../api/schemas-cluster.js';
import type { HostRow } from './cluster-store.js';

export function clusterRegistry(hosts: readonly HostRow[]): Registry {
  const r = new Registry();
  const registers = [r];
  const count = new Gauge({ name: 'corral_cluster_hosts', help: 'Hosts of the cluster in each state', labelNames: ['state'], registers });
  for (const s of HOST_STATES) count.set({ state: s }, hosts.filter((h) => h.state === s).length);
  const state = new Gauge({ name: 'corral_cluster_host_state', help: 'The host\'s state: 1 for the state it is in', labelNames: ['host', 'state'], registers });
  const g = (name: string, help: string): Gauge<'host'> => new Gauge({ name, help, labelNames: ['host'], registers });
  const capCpus = g('corral_cluster_host_capacity_vcpus', 'vCPUs the host\'s pool can give, as its agent last reported');
  const capMem = g('corral_cluster_host_capacity_memory_bytes', 'Guest memory the host\'s pool can give, as its agent last reported');
  const resCpus = g('corral_cluster_host_allocated_vcpus', 'vCPUs reserved by the instances placed on the host');
  const resMem = g('corral_cluster_host_allocated_memory_bytes', 'Guest memory reserved by the instances placed on the host');
  const inst = g('corral_cluster_host_instances', 'Instances placed on the host');
  const age = g('corral_cluster_host_heartbeat_age_seconds', 'Time since the host\'s last heartbeat (database clock)');
  for (const h of hosts) {
    const host = { host: h.name };
    state.set({ ...host, state: h.state }, 1);
    const cap = (h.capacity ?? {}) as { cpus?: unknown; memory?: unknown };
    if (typeof cap.cpus === 'number') capCpus.set(host, cap.cpus);
    if (typeof cap.memory === 'number') capMem.set(host, cap.memory);
    resCpus.set(host, h.reserved.cpus);
    resMem.set(host, h.reserved.memory);
    inst.set(host, h.reserved.instances);
    if (h.heartbeatAgeMs !== null) age.set(host, h.heartbeatAgeMs / 1000);
  }
  return r;
}
