/**
 * What the instance page shows below its console: the charts of its history, and while it runs its memory map and
 * its vCPU threads with their pinning (the devices with their approach and data path are in the page's side pane).
 */
import type { Device, Instance } from '../types';
import { Charts } from './charts';
import { MemoryMap } from './memory-map';
import { VcpuThreads } from './vcpus';

export function InstanceViews({ inst, devices, running }: { inst: Instance; devices: readonly Device[] | null; running: boolean }) {
  const run = inst.startedAt ?? '';
  return (
    <div class="instance-views">
      <section class="pane" aria-labelledby="charts-title">
        <h2 id="charts-title">Charts</h2>
        <Charts name={inst.name} />
      </section>
      {running && (
        <div class="panes">
          <section class="pane" aria-labelledby="memmap-title">
            <h2 id="memmap-title">Memory map</h2>
            <MemoryMap key={run} inst={inst} devices={devices ?? []} />
          </section>
          <section class="pane side-pane" aria-labelledby="vcpus-title">
            <h2 id="vcpus-title">vCPU threads</h2>
            <VcpuThreads key={run} name={inst.name} />
          </section>
        </div>
      )}
    </div>
  );
}
