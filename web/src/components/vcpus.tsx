/**
 * The vCPU threads (GET /v1/instances/NAME/cpu, read again every 10 s): each vCPU's host thread, its CPU time, the
 * host CPU it last ran on and the ones it may run on (Cpus_allowed_list: the pinning as the kernel applies it).
 */
import { enc } from '../api';
import { usePoll } from '../poll';
import type { CpuStats } from '../types';

export function VcpuThreads({ name }: { name: string }) {
  const { data, error } = usePoll<CpuStats>(`/v1/instances/${enc(name)}/cpu`, 10_000);
  if (!data) return <p class="muted">{error ?? 'Reading the vCPU threads…'}</p>;
  const t = data.topology;
  return (
    <div>
      <p class="muted">
        QEMU pid {data.pid}, {data.cpus} of {data.maxCpus} vCPUs ({t.sockets} socket{t.sockets === 1 ? '' : 's'} × {t.cores} cores × {t.threads} threads);
        pinning: {data.pin ?? 'none (the threads run on any host CPU)'}
      </p>
      <table class="grid compact vcpus">
        <thead><tr><th>vCPU</th><th>host thread</th><th>CPU time</th><th>last host CPU</th><th>may run on</th></tr></thead>
        <tbody>
          {data.vcpus.map((v) => (
            <tr key={v.index} data-vcpu={v.index}>
              <td>{v.index}</td>
              <td class="data">{v.threadId}</td>
              <td>{v.cpuTime === null ? '-' : `${v.cpuTime.toFixed(2)} s`}</td>
              <td>{v.lastCpu ?? '-'}</td>
              <td class="data">{v.allowed ?? '-'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
