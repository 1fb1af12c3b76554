/**
 * What must hold of a daemon's data dir and host whenever no operation is in flight (after a crash and restart,
 * after a mixed load): every QEMU is a live instance's recorded one and not root, each with its console keeper,
 * and no keeper, storage daemon, runtime dir, instance folder, staging folder, tap, volume binding or file handed
 * to corral-qemu is left that the records do not explain.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Daemon } from './harness.js';

export interface Proc { pid: number; prog: string; argv: string[] }

/** Live (not zombie) processes whose command line names `dataDir`. */
export function processesOfDataDir(dataDir: string): Proc[] {
  const out: Proc[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]?.[0] === 'Z') continue;
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.includes(dataDir))) out.push({ pid: Number(e), prog: argv[0]!, argv });
    } catch {
      /* raced */
    }
  }
  return out;
}

const LIVE = ['running', 'paused'];

/**
 * The invariants of a settled daemon `d` whose taps live in network namespace `netns`; `where` names the
 * moment in failure messages. Every instance is settled (running, paused, stopped or crashed).
 */
export async function checkInvariants(d: Daemon, netns: string, where: string): Promise<void> {
  const instances: any[] = (await d.ok('GET', '/v1/instances')).instances;
  const live = instances.filter((i) => LIVE.includes(i.state));
  for (const i of instances) assert.ok([...LIVE, 'stopped', 'crashed'].includes(i.state), `${where}: ${i.name} is ${i.state}`);
  const uuids = new Set(instances.map((i) => i.uuid));
  const procs = processesOfDataDir(d.dataDir);
  // QEMU: one per live instance, its recorded pid, running that instance; none for anything else
  const qemus = procs.filter((p) => /qemu-system/.test(p.prog));
  assert.deepEqual(qemus.map((q) => q.pid).sort(), live.map((i) => i.pid).sort(), `${where}: the QEMUs running are exactly the live instances'`);
  for (const i of live) assert.ok(qemus.find((q) => q.pid === i.pid)!.argv.some((a) => a.includes(i.uuid)), `${where}: QEMU ${i.pid} runs ${i.name}`);
  for (const q of qemus) assert.equal(readFileSync(`/proc/${q.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1] !== '0', true, `${where}: QEMU ${q.pid} is not root`);
  // console keepers: one per live instance, writing its log; none left by a VM that ended (a keeper ends at the
  // EOF its QEMU's exit gives it: allowed a moment to get there)
  const wantKeepers = live.map((i) => `corral-console-keeper ${join(d.dataDir, 'instances', i.uuid, 'console.log')}`).sort();
  const keepersNow = (): string[] => processesOfDataDir(d.dataDir).filter((p) => p.prog.startsWith('corral-console-keeper ')).map((p) => p.prog).sort();
  for (let i = 0; i < 50 && JSON.stringify(keepersNow()) !== JSON.stringify(wantKeepers); i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(keepersNow(), wantKeepers, `${where}: the console keepers are exactly the live instances'`);
  // storage daemons only under live instances' runtime dirs
  for (const s of procs.filter((p) => /qemu-storage-daemon/.test(p.prog))) {
    assert.ok(live.some((i) => s.argv.some((a) => a.includes(`/run/${i.uuid}/`))), `${where}: a storage daemon of no live instance: ${s.argv.join(' ')}`);
  }
  // folders: one per instance; runtime dirs only for live ones; no staging or removal folder left
  assert.deepEqual(readdirSync(join(d.dataDir, 'instances')).filter((n) => !uuids.has(n)), [], `${where}: instance folders of no instance`);
  assert.deepEqual(readdirSync(join(d.dataDir, 'run')).filter((n) => !live.some((i) => i.uuid === n)), [], `${where}: runtime dirs of no live instance`);
  for (const sub of ['images', 'volumes']) {
    assert.deepEqual(readdirSync(join(d.dataDir, sub)).filter((n) => n.startsWith('.')), [], `${where}: staging or removal folders in ${sub}/`);
  }
  // taps: only the live instances' NICs'
  const taps = JSON.parse(execFileSync('ip', ['-n', netns, '-j', 'link', 'show', 'type', 'tun'], { encoding: 'utf8' }) || '[]').map((l: any) => l.ifname).sort();
  const wanted: string[] = [];
  for (const i of live) for (const n of (await d.ok('GET', `/v1/instances/${i.name}/nics`)).nics) if (n.tap) wanted.push(n.tap);
  assert.deepEqual(taps, wanted.sort(), `${where}: taps`);
  // volume bindings follow the instances' disks
  const owner = new Map<string, string>();
  for (const i of instances) for (const disk of (await d.ok('GET', `/v1/instances/${i.name}/disks`)).disks) owner.set(disk.volume, i.name);
  for (const v of (await d.ok('GET', '/v1/volumes')).volumes) assert.equal(v.attachedTo, owner.get(v.name) ?? null, `${where}: volume ${v.name}'s binding`);
  // corral-qemu owns nothing but what live instances use
  const uid = execFileSync('id', ['-u', 'corral-qemu'], { encoding: 'utf8' }).trim();
  const owned = execFileSync('find', [d.dataDir, '-uid', uid], { encoding: 'utf8' }).split('\n').filter(Boolean);
  const liveVolumes = [...owner].filter(([, inst]) => live.some((i) => i.name === inst)).map(([v]) => `/volumes/${v}/`);
  for (const f of owned) {
    assert.ok(live.some((i) => f.includes(i.uuid)) || liveVolumes.some((v) => f.includes(v)), `${where}: ${f} is corral-qemu's, and no live instance uses it`);
  }
}
