import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TCG_EXITS_REASON, isExitCounter, nextSlots, slotsToUnplug, parseAllowedList, parseCpuHelp, parseTaskStat, parseVcpuStats, pinPlan } from '../../../src/services/cpu-plan.js';

test('pin plan: as many CPUs as vCPUs pins one-to-one; emulator threads go on the other host CPUs', () => {
  const plan = pinPlan({ vcpuTids: [201, 202], emulatorTids: [100, 150], pin: [2, 3], hostCpus: [0, 1, 2, 3] });
  assert.deepEqual(Object.fromEntries(plan), { 100: '0-1', 150: '0-1', 201: '2', 202: '3' });
});

test('pin plan: another count puts every vCPU on the whole set; a pin list covering the host leaves emulators everywhere', () => {
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11, 12, 13], emulatorTids: [10], pin: [1, 3], hostCpus: [0, 1, 2, 3] })),
    { 10: '0,2', 11: '1,3', 12: '1,3', 13: '1,3' });
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11], emulatorTids: [10], pin: [0, 1], hostCpus: [0, 1] })), { 10: '0-1', 11: '0-1' });
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11], emulatorTids: [10, 12], pin: [1], hostCpus: [0, 1] })), { 10: '0', 11: '1', 12: '0' });
});

test('pin plan: a pin list as long as maxCpus pins the vCPUs there are one-to-one (hotplug keeps the order)', () => {
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11], emulatorTids: [10], pin: [2, 3], hostCpus: [0, 1, 2, 3], maxCpus: 2 })), { 10: '0-1', 11: '2' });
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11, 12], emulatorTids: [10], pin: [2, 3], hostCpus: [0, 1, 2, 3], maxCpus: 2 })), { 10: '0-1', 11: '2', 12: '3' });
});

test('pin plan: vCPUs sharing one thread (single-threaded TCG) get the union of their CPUs', () => {
  assert.deepEqual(Object.fromEntries(pinPlan({ vcpuTids: [11, 11], emulatorTids: [10], pin: [2, 3], hostCpus: [0, 1, 2, 3] })), { 10: '0-1', 11: '2-3' });
});

test('task stat: a comm with spaces and parentheses; CPU time and the last CPU', () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = 'S';
  fields[11] = '150'; // utime (field 14)
  fields[12] = '50'; // stime (field 15)
  fields[36] = '1'; // processor (field 39)
  const st = parseTaskStat(`1234 (CPU 0/KVM (x)) ${fields.join(' ')}\n`);
  assert.deepEqual(st, { comm: 'CPU 0/KVM (x)', state: 'S', ticks: 200, processor: 1 });
  assert.equal(parseTaskStat('garbage'), null);
  assert.equal(parseAllowedList('Name:\tqemu\nCpus_allowed:\t2\nCpus_allowed_list:\t1\nMems_allowed:\t1\n'), '1');
  assert.equal(parseAllowedList('Name: x\n'), null);
});

// A reply as QEMU (qapi/stats.json: a list of StatsResult {provider, qom-path, stats: [{name, value}]}) gives it under KVM.
const KVM_REPLY = [
  {
    provider: 'kvm', 'qom-path': '/machine/unattached/device[0]',
    stats: [
      { name: 'guest_mode', value: 0 }, { name: 'directed_yield_successful', value: 0 }, { name: 'exits', value: 91234 },
      { name: 'io_exits', value: 40112 }, { name: 'mmio_exits', value: 2301 }, { name: 'halt_exits', value: 5123 },
      { name: 'irq_exits', value: 3310 }, { name: 'signal_exits', value: 2 }, { name: 'halt_successful_poll', value: 812 },
      { name: 'halt_poll_success_hist', value: [0, 3, 9, 1] }, { name: 'l1d_flush', value: 0 },
    ],
  },
  {
    provider: 'kvm', 'qom-path': '/machine/peripheral/cpu1',
    stats: [{ name: 'exits', value: 1000 }, { name: 'io_exits', value: 10 }, { name: 'halt_exits', value: 900 }],
  },
];

test('query-stats (KVM vCPU counters): exit counters per vCPU, mapped to the vCPU index, and summed', () => {
  const r = parseVcpuStats(KVM_REPLY, [
    { 'cpu-index': 1, 'qom-path': '/machine/peripheral/cpu1' }, { 'cpu-index': 0, 'qom-path': '/machine/unattached/device[0]' },
  ]);
  assert.equal(r.available, true);
  if (!r.available) return;
  assert.deepEqual(r.vcpus.map((v) => v.index), [0, 1]);
  assert.deepEqual(r.vcpus[0]!.counters, { exits: 91234, io_exits: 40112, mmio_exits: 2301, halt_exits: 5123, irq_exits: 3310, signal_exits: 2, halt_successful_poll: 812 });
  assert.equal(r.total.exits, 92234);
  assert.equal(r.total.halt_exits, 6023);
  assert.equal(r.total.mmio_exits, 2301);
  assert.equal(isExitCounter('guest_mode'), false);
});

test('query-stats with nothing from KVM (TCG, or no provider) is unavailable with a reason', () => {
  assert.deepEqual(parseVcpuStats([]), { available: false, reason: 'QEMU returned no KVM vCPU statistics' });
  assert.equal(parseVcpuStats({}).available, false);
  assert.match(TCG_EXITS_REASON, /only under KVM.*TCG/);
});

test('-cpu help: the model names', () => {
  const m = parseCpuHelp('Available CPUs:\nx86 486                   (alias configured by machine type)\nx86 Skylake-Server-v1  Intel Xeon\nx86 host                  processor with all supported host features\nx86 max  Enables all\n\nRecognized CPUID flags:\n  3dnow abm\n');
  assert.deepEqual([...m].sort(), ['486', 'Skylake-Server-v1', 'host', 'max']);
});

test('hotplug slots: the free ones, lowest index first, with the props QEMU gave', () => {
  const list = [
    { type: 'max-x86_64-cpu', 'vcpus-count': 1, props: { 'socket-id': 1, 'core-id': 1, 'thread-id': 0 } },
    { type: 'max-x86_64-cpu', 'vcpus-count': 1, props: { 'socket-id': 1, 'core-id': 0, 'thread-id': 0 } },
    { type: 'max-x86_64-cpu', 'vcpus-count': 1, props: { 'socket-id': 0, 'core-id': 1, 'thread-id': 0 } },
    { type: 'max-x86_64-cpu', 'vcpus-count': 1, props: { 'socket-id': 0, 'core-id': 0, 'thread-id': 0 }, 'qom-path': '/machine/unattached/device[0]' },
  ];
  assert.deepEqual(nextSlots(list, 2, { cores: 2, threads: 1 }), [
    { driver: 'max-x86_64-cpu', id: 'cpu1', 'socket-id': 0, 'core-id': 1, 'thread-id': 0 },
    { driver: 'max-x86_64-cpu', id: 'cpu2', 'socket-id': 1, 'core-id': 0, 'thread-id': 0 },
  ]);
  assert.equal(nextSlots(list, 9, { cores: 2, threads: 1 }).length, 3);
});

test('unplug: the plugged vCPUs with the highest index first, never vCPU 0', () => {
  const cpu = (socket: number, core: number, path?: string) => ({
    type: 'max-x86_64-cpu', 'vcpus-count': 1, props: { 'socket-id': socket, 'core-id': core, 'thread-id': 0 }, ...(path ? { 'qom-path': path } : {}),
  });
  const list = [cpu(0, 0, '/machine/unattached/device[0]'), cpu(0, 1, '/machine/peripheral/cpu1'), cpu(1, 0, '/machine/peripheral/cpu2'), cpu(1, 1)];
  const t = { cores: 2, threads: 1 };
  assert.deepEqual(slotsToUnplug(list, 1, t), ['/machine/peripheral/cpu2']);
  assert.deepEqual(slotsToUnplug(list, 5, t), ['/machine/peripheral/cpu2', '/machine/peripheral/cpu1']);
  assert.deepEqual(slotsToUnplug([cpu(0, 0, '/machine/unattached/device[0]')], 1, t), []);
});
