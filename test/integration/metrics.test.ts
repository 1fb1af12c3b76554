/**
 * GET /metrics with a real guest on a bridge network (the daemon in a network namespace of its own): promtool's own
 * check passes, and the figures agree with what a user would read elsewhere: the QEMU process's CPU time in
 * /proc/PID/stat, its Rss, `corral stats` (vCPU times, the balloon), the spec; the disk counters grow by what the
 * guest reads, the NIC counters (its tap's) by the packets it pings with. Then a guest on user-mode networking,
 * which QEMU keeps no NIC counter of: its guest agent's figures, source guest-agent, in `corral stats --json`,
 * /metrics and the history, growing by its pings to the slirp gateway and agreeing with the guest's own counters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';
import { leased } from './net-probes.js';
import { rssBytes } from '../../src/services/metrics.js';
import { parseTaskStat } from '../../src/services/cpu-plan.js';

const skip = SKIP_NO_TINY;
let d: Daemon;
// a history step of 1 s: the last test sees the NIC chart's points without waiting 5 s for each
useDaemon((x) => { d = x; }, { netns: `corral-met-${process.pid}`, env: () => ({ CORRAL_HISTORY_STEP_MS: '1000' }) });

/** The value of one series: `name{labels...}` whose labels include all of `has`. */
function value(text: string, name: string, has: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if (Object.entries(has).every(([k, v]) => (m[2] ?? '').includes(`${k}="${v}"`))) return Number(m[3]);
  }
  throw new Error(`no ${name} ${JSON.stringify(has)} in /metrics`);
}

const scrape = async (): Promise<string> => {
  const r = await d.api<string>('GET', '/metrics');
  assert.equal(r.status, 200);
  return r.body;
};

const procCpu = (pid: number): number => parseTaskStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))!.ticks / 100;
const procRss = (pid: number): number => rssBytes(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))!;

test('/metrics with a guest running: promtool passes, and the figures agree with /proc, corral stats and the guest', { skip, timeout: 240_000 }, async () => {
  await d.ok('POST', '/v1/networks', { name: 'metnet', kind: 'bridge', cidr: '10.93.0.0/24', nat: false }, 201);
  const vm = await d.ok('POST', '/v1/instances', { name: 'm1', image: 'tiny', memory: 128 * 2 ** 20, network: 'metnet', start: true }, 201);
  await d.waitConsole('m1', /corral-tiny ready/, 120_000);
  const c = await ConsoleSession.open(d, 'm1');
  await leased(c);
  const id = { name: 'm1', uuid: vm.uuid };
  const pid = (await d.ok('GET', '/v1/instances/m1')).pid as number;

  const cpuBefore = procCpu(pid);
  const statsBefore = await d.ok('GET', '/v1/instances/m1/cpu');
  const rssBefore = procRss(pid);
  const first = await scrape();
  const rssAfter = procRss(pid);
  const statsAfter = await d.ok('GET', '/v1/instances/m1/cpu');
  const cpuAfter = procCpu(pid);

  const check = spawnSync('promtool', ['check', 'metrics'], { input: first, encoding: 'utf8' });
  assert.ifError(check.error);
  assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);

  assert.equal(value(first, 'corral_instance_state', { ...id, state: 'running' }), 1);
  assert.equal(value(first, 'corral_instance_vcpus', id), 1);
  assert.equal(value(first, 'corral_instance_memory_configured_bytes', id), 128 * 2 ** 20);
  const cpu = value(first, 'corral_instance_cpu_seconds_total', id);
  assert.ok(cpu >= cpuBefore && cpu <= cpuAfter, `QEMU's CPU time ${cpu} s between /proc's ${cpuBefore} and ${cpuAfter}`);
  const vcpu0 = value(first, 'corral_instance_vcpu_seconds_total', { ...id, vcpu: '0' });
  const s0 = (s: any): number => s.vcpus.find((v: any) => v.index === 0).cpuTime;
  assert.ok(vcpu0 >= s0(statsBefore) - 0.01 && vcpu0 <= s0(statsAfter) + 0.01, `vCPU 0: ${vcpu0} s between corral stats' ${s0(statsBefore)} and ${s0(statsAfter)}`);
  assert.ok(vcpu0 <= cpu, 'a thread\'s time is part of the process\'s');
  const rss = value(first, 'corral_instance_memory_resident_bytes', id);
  assert.ok(rss >= Math.min(rssBefore, rssAfter) * 0.9 && rss <= Math.max(rssBefore, rssAfter) * 1.1, `Rss ${rss} near /proc's ${rssBefore}..${rssAfter}`);
  const guest = value(first, 'corral_instance_memory_guest_resident_bytes', id);
  assert.ok(guest > 0 && guest <= 128 * 2 ** 20 && guest < rss, `guest RAM resident ${guest}: some of its 128 MiB, less than QEMU's Rss ${rss}`);
  const mem = await d.ok('GET', '/v1/instances/m1/memory');
  assert.equal(value(first, 'corral_instance_memory_balloon_bytes', id), mem.guest.balloon, 'the balloon as corral stats shows it');
  assert.ok(value(first, 'corral_pool_allocated_memory_bytes') >= 128 * 2 ** 20);

  // the guest reads 8 MiB of its disk it has not read before, and pings its gateway 5 times
  const disk = { ...id, device: 'disk0' };
  const nic = { ...id, nic: 'net0', source: 'tap' };
  const readBefore = value(first, 'corral_instance_disk_reads_total', disk);
  const bytesBefore = value(first, 'corral_instance_disk_read_bytes_total', disk);
  const txBefore = value(first, 'corral_instance_network_transmit_packets_total', nic);
  const rxBefore = value(first, 'corral_instance_network_receive_packets_total', nic);
  assert.match(await c.run('dd if=/dev/vda of=/dev/null bs=1M count=8 skip=40 2>&1 | tail -1', 60_000), /8\+0 records out/);
  assert.match(await c.run('ping -c 5 -i 0.2 -W 2 10.93.0.1 | grep -c "bytes from"', 30_000), /^5\r?$/m);
  const second = await scrape();
  assert.ok(value(second, 'corral_instance_disk_read_bytes_total', disk) - bytesBefore >= 8 * 2 ** 20, 'the 8 MiB read counted');
  assert.ok(value(second, 'corral_instance_disk_reads_total', disk) > readBefore);
  assert.ok(value(second, 'corral_instance_network_transmit_packets_total', nic) - txBefore >= 5, 'the 5 echo requests counted as sent');
  assert.ok(value(second, 'corral_instance_network_receive_packets_total', nic) - rxBefore >= 5, 'the 5 replies counted as received');
  c.close();

  await d.ok('POST', '/v1/instances/m1/stop', { timeout: 1 });
  const stopped = await scrape();
  assert.equal(value(stopped, 'corral_instance_state', { ...id, state: 'stopped' }), 1);
  assert.doesNotMatch(stopped, /corral_instance_state\{name="m1",[^}]*state="running"/, 'one state per instance');
  assert.doesNotMatch(stopped, /corral_instance_cpu_seconds_total\{name="m1"/, 'no CPU figure without a QEMU');
});

test('a guest on user-mode networking: its NIC counters come from its guest agent (source guest-agent) in corral stats, /metrics and the history', { skip, timeout: 180_000 }, async () => {
  const vm = await d.ok('POST', '/v1/instances', { name: 'u1', image: 'tiny', memory: 128 * 2 ** 20, start: true }, 201);
  await d.waitConsole('u1', /corral-tiny ready/, 120_000);
  const c = await ConsoleSession.open(d, 'u1');
  await leased(c);
  const stats = async (): Promise<any> => {
    const r = await d.cli(['stats', 'u1', '--json']);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout).nics[0];
  };
  let before: any;
  await waitFor(async () => (before = await stats()).source === 'guest-agent', 30_000, 'the guest agent\'s NIC counters', () => JSON.stringify(before));
  assert.equal(before.network, 'default');
  assert.equal(before.mac, vm.spec.nics[0].mac);

  // the guest pings the slirp gateway 5 times: 5 echo requests sent, 5 replies received, as the guest counts them
  const guestCount = async (what: string): Promise<number> => Number(/^(\d+)\r?$/m.exec(await c.run(`cat /sys/class/net/eth0/statistics/${what}`, 10_000))?.[1]);
  assert.match(await c.run('ping -c 5 -i 0.2 -W 2 10.0.2.2 | grep -c "bytes from"', 30_000), /^5\r?$/m);
  const guestTx = await guestCount('tx_packets');
  const guestRx = await guestCount('rx_packets');
  let after: any;
  await waitFor(async () => (after = await stats()).txPackets >= guestTx, 15_000, 'the counters after the pings', () => JSON.stringify(after));
  assert.equal(after.source, 'guest-agent');
  assert.ok(after.txPackets - before.txPackets >= 5, `the 5 echo requests counted as sent: ${before.txPackets} -> ${after.txPackets}`);
  assert.ok(after.rxPackets - before.rxPackets >= 5, `the 5 replies counted as received: ${before.rxPackets} -> ${after.rxPackets}`);
  assert.ok(after.txBytes - before.txBytes >= 5 * 98 && after.rxBytes - before.rxBytes >= 5 * 98, 'each echo is 98 bytes on the wire');
  // the guest's side, not turned around: what it says it sent is what it sent
  assert.ok(after.txPackets >= guestTx && after.txPackets <= guestTx + 5, `tx ${after.txPackets} is the guest's own ${guestTx}`);
  assert.ok(after.rxPackets >= guestRx && after.rxPackets <= guestRx + 5, `rx ${after.rxPackets} is the guest's own ${guestRx}`);
  c.close();

  const text = await scrape();
  const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
  const nic = { name: 'u1', uuid: vm.uuid, nic: 'net0', source: 'guest-agent' };
  assert.ok(value(text, 'corral_instance_network_transmit_packets_total', nic) >= after.txPackets);
  assert.ok(value(text, 'corral_instance_network_receive_bytes_total', nic) >= after.rxBytes);

  // the history behind the instance page's NIC chart: figures, and from the guest agent
  let h: any;
  await waitFor(async () => {
    h = await d.ok('GET', '/v1/instances/u1/history');
    return h.series.nicTxRate.some((x: number | null) => x !== null);
  }, 20_000, 'a NIC rate in the history', () => JSON.stringify(h?.series.nicTxBytes));
  assert.deepEqual(h.nicSources, ['guest-agent']);
  assert.ok(h.series.nicTxBytes.some((x: number | null) => x !== null && x >= before.txBytes));
  for (const x of [...h.series.nicRxRate, ...h.series.nicTxRate]) assert.ok(x === null || x >= 0);
  await d.ok('POST', '/v1/instances/u1/stop', { timeout: 1 });
});
