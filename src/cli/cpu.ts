/** `corral cpu NAME`: vCPU threads, affinity, cgroup and VM exits of a running instance. (resize: see stats.ts) */
import type { Command } from 'commander';
import type { ApiClient } from './client.js';
import type { CpuStats } from '../api/schemas-compute.js';
import { orDash, printJson, printLines, table } from './format.js';

export type { CpuStats };

const enc = encodeURIComponent;
const secs = (v: number): string => `${v.toFixed(2)}s`;

export function cpuReport(s: CpuStats): string {
  const out: string[] = [];
  const t = s.topology;
  out.push(`${s.name}: ${s.cpus} of ${s.maxCpus} vCPUs${t ? ` (${t.sockets} socket(s) x ${t.cores} core(s) x ${t.threads} thread(s))` : ''}, ${orDash(s.accel)}, QEMU pid ${s.pid}${s.pin ? `, pinned to ${s.pin}` : ''}`);
  out.push(table(['VCPU', 'THREAD', 'HOST-CPU-TIME', 'LAST-CPU', 'ALLOWED'], (s.vcpus ?? []).map((v) => [
    String(v.index), String(v.threadId), orDash(v.cpuTime, secs), orDash(v.lastCpu), orDash(v.allowed),
  ])));
  const g = s.cgroup;
  if (g) {
    const mib = (b: number): string => `${Math.round(b / 1048576)} MiB`;
    out.push(`cgroup ${g.version} ${g.name}: weight ${orDash(g.cpuWeight)}, cpu limit ${orDash(g.cpuLimit, (v) => `${v} CPUs`)}, memory limit ${orDash(g.memoryLimit, mib)}, cpu used ${orDash(g.cpuUsage, secs)}, memory used ${orDash(g.memoryUsage, mib)}`);
  }
  if (s.exits?.available) {
    const names = Object.keys(s.exits.total).sort();
    out.push('VM exits:');
    out.push(table(['VCPU', ...names.map((n) => n.toUpperCase())], [
      ...s.exits.vcpus.map((v) => [orDash(v.index), ...names.map((n) => orDash(v.counters[n]))]),
      ['total', ...names.map((n) => orDash(s.exits.available ? s.exits.total[n] : null))],
    ]));
  } else if (s.exits) {
    out.push(`VM exits: not available: ${s.exits.reason}`);
  }
  return out.join('\n');
}

export function registerCpuCommands(program: Command, client: () => ApiClient): void {
  program
    .command('cpu')
    .description('show the vCPU threads of a running instance: host CPU time, last CPU, affinity, cgroup and VM exits')
    .argument('<name>', 'instance name')
    .option('--json', 'print the API JSON')
    .action(async (name: string, o: { json?: boolean }) => {
      const s = await client().call<CpuStats>('GET', `/v1/instances/${enc(name)}/cpu`);
      if (o.json) printJson(s);
      else printLines(cpuReport(s));
    });

}
