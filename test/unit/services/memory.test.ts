import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeDefaults } from '../../../src/core/spec-compute.js';
import { QmpControl } from '../../../src/qemu/vm-control.js';
import { MemoryService, type MemoryStats } from '../../../src/services/memory.js';

const MiB = 1024 * 1024;

/** A QEMU stand-in: the balloon, virtio-mem and the guest's statistics, with every command recorded. */
function fakeVm(opts: { memory: number; maxMemory?: number | null; balloon?: boolean; used?: number; state?: string; poolFree?: number }) {
  const calls: Array<[string, Record<string, unknown> | undefined]> = [];
  /** the commands sent while the instance's lock was not held */
  const unlocked: string[] = [];
  let locked = false;
  const state = { actual: opts.memory, plugged: 0 };
  const total = opts.memory - 100 * MiB;
  const qmp = {
    async execute(cmd: string, args?: Record<string, unknown>): Promise<unknown> {
      calls.push([cmd, args]);
      if (!locked) unlocked.push(cmd);
      if (cmd === 'query-balloon') return { actual: state.actual };
      if (cmd === 'balloon') { state.actual = args!.value as number; return {}; }
      if (cmd === 'qom-set') { if (args!.property === 'requested-size') state.plugged = args!.value as number; return {}; }
      if (cmd === 'qom-get' && args!.property === 'size') return state.plugged;
      if (cmd === 'qom-get' && args!.property === 'deflate-on-oom') return true;
      if (cmd === 'qom-get' && args!.property === 'guest-stats') {
        const avail = total - (opts.used ?? 50 * MiB) - (opts.memory - state.actual);
        return { stats: { 'stat-total-memory': total, 'stat-free-memory': avail, 'stat-available-memory': avail }, 'last-update': 1 };
      }
      if (cmd === 'query-memdev') return [{ id: 'mem0' }];
      if (cmd === 'human-monitor-command') {
        return String(args!['command-line']).startsWith('info mtree')
          ? `FlatView #1\n AS "memory", root: system\n  0000000000000000-${(opts.memory - 1).toString(16).padStart(16, '0')} (prio 0, ram): mem0\n`
          : 'Host virtual address for 0x0 (mem0) is 0x7f0000000000';
      }
      throw new Error(`unexpected ${cmd}`);
    },
  };
  const row = {
    name: 'vm', uuid: 'u1', state: opts.state ?? 'running', pid: 1,
    spec: { ...computeDefaults(1), memory: opts.memory, maxMemory: opts.maxMemory ?? null, balloon: opts.balloon ?? true },
  };
  const events: string[] = [];
  const changes: Array<Record<string, unknown>> = [];
  const free = opts.poolFree ?? 64 * 1024 * MiB;
  const pool = { capacity: { cpus: 8, memory: free }, allocated: { cpus: 0, memory: 0, instances: 0 }, free: { cpus: 8, memory: free }, ratios: { cpu: 1, memory: 1 }, reservedMemory: 0 };
  const svc = new MemoryService({
    instances: {
      live: () => ({ row, pid: 999_999_999, vm: new QmpControl(qmp as never) }), rowOf: () => row, pool: () => pool,
      updateSpec: (_n: string, patch: Record<string, unknown>) => { Object.assign(row.spec, patch); return row; },
      withLock: async (_n: string, fn: () => Promise<unknown>) => {
        locked = true;
        try {
          return await fn();
        } finally {
          locked = false;
        }
      },
    } as never,
    config: { setLocked: async (_n: string, c: Record<string, unknown>) => { changes.push(c); return {} as never; } },
    events: { publish: (t: string) => { events.push(t); } } as never,
    log: { warn: () => {} },
  });
  return { svc, calls, unlocked, state, events, changes, row, qmp };
}

/** A fake VM whose QEMU the service saw start (its boot memory known). */
async function started(opts: Parameters<typeof fakeVm>[0]): Promise<ReturnType<typeof fakeVm>> {
  const vm = fakeVm(opts);
  await vm.svc.hooks().launched!(vm.row as never, new QmpControl(vm.qmp as never) as never);
  vm.calls.length = 0;
  vm.unlocked.length = 0;
  return vm;
}

test('at or below the boot size the balloon moves; above it virtio-mem plugs the difference; the new size is kept in the spec', async () => {
  const vm = await started({ memory: 1024 * MiB, maxMemory: 2048 * MiB });
  const s = await vm.svc.resizeMemory('vm', '512M') as MemoryStats;
  assert.deepEqual([vm.state.actual, vm.state.plugged], [512 * MiB, 0]);
  assert.equal(s.requested, 512 * MiB);
  assert.equal(vm.row.spec.memory, 512 * MiB, 'kept: list, the pool and the next start use it');
  assert.equal(s.configured.memory, 1024 * MiB, 'the running QEMU still boots from 1 GiB');
  assert.equal(s.guest.visible, 512 * MiB);
  assert.equal(s.map[0]?.hvaStart, 0x7f0000000000);
  await vm.svc.resizeMemory('vm', '1536M');
  assert.deepEqual([vm.state.actual, vm.state.plugged], [1024 * MiB, 512 * MiB], 'the balloon deflates fully when virtio-mem plugs');
  assert.deepEqual(vm.events, ['memory.resized', 'memory.resized']);
});

test('the reply of a live resize is read under the lock: a stop queued behind it cannot end QEMU first', async () => {
  const vm = await started({ memory: 1024 * MiB });
  const s = await vm.svc.resizeMemory('vm', '512M') as MemoryStats;
  assert.equal(s.requested, 512 * MiB);
  assert.ok(vm.calls.length > 0);
  assert.deepEqual(vm.unlocked, [], 'no monitor command outside the lock');
});

test('a stopped instance: the resize is a configuration change (the next boot size); QEMU is not asked', async () => {
  const vm = fakeVm({ memory: 1024 * MiB, state: 'stopped' });
  assert.deepEqual(await vm.svc.resizeMemory('vm', '2G'), { name: 'vm', memory: 2048 * MiB, state: 'stopped' });
  assert.deepEqual(vm.changes, [{ memory: 2048 * MiB }]);
  assert.deepEqual(vm.calls, []);
});

test('growing a running guest is admitted against the pool; short, nothing is plugged', async () => {
  const vm = await started({ memory: 1024 * MiB, maxMemory: 4096 * MiB, poolFree: 1536 * MiB });
  await vm.svc.resizeMemory('vm', '1536M');
  await assert.rejects(vm.svc.resizeMemory('vm', '2G'), (e: { code?: string }) => e.code === 'INSUFFICIENT_RESOURCES');
  assert.equal(vm.state.plugged, 512 * MiB);
  assert.equal(vm.row.spec.memory, 1536 * MiB, 'list and the pool see what is plugged now');
});

test('refused with INVALID_SPEC on memory, nothing changed: above maxMemory, above boot without it, below 64 MiB, below the use', async () => {
  const check = async (vm: ReturnType<typeof fakeVm>, size: string, re: RegExp): Promise<void> => {
    const before = { ...vm.state };
    await assert.rejects(vm.svc.resizeMemory('vm', size), (e: { code?: string; details?: { field?: string }; message: string }) => {
      assert.equal(e.code, 'INVALID_SPEC');
      assert.equal(e.details?.field, 'memory');
      assert.match(e.message, re);
      return true;
    });
    assert.deepEqual(vm.state, before);
    assert.equal(vm.calls.some(([c, a]) => c === 'balloon' || (c === 'qom-set' && a?.property === 'requested-size')), false);
  };
  await check(fakeVm({ memory: 1024 * MiB, maxMemory: 2048 * MiB }), '3G', /more than maxMemory \(2 GiB\)/);
  await check(fakeVm({ memory: 1024 * MiB }), '2G', /more than the boot memory/);
  await check(fakeVm({ memory: 1024 * MiB }), '32M', /at least 64 MiB/);
  await check(fakeVm({ memory: 1024 * MiB, used: 400 * MiB }), '256M', /256 MiB is below what the guest uses now \(400 MiB\) plus a 32 MiB margin/);
  await check(fakeVm({ memory: 1024 * MiB, balloon: false }), '512M', /needs the balloon/);
  await check(fakeVm({ memory: 1024 * MiB, maxMemory: 2048 * MiB }), '1025M', /multiple of 2 MiB/);
});

test('the balloon snapshot gives the pressure controller what the guest uses, not counting the balloon', async () => {
  const vm = await started({ memory: 1024 * MiB, used: 200 * MiB });
  await vm.svc.resizeMemory('vm', '768M');
  // the row as the store holds it (the pressure controller reads rows from the store): the resize is in its spec
  const s = await vm.svc.balloonSnapshot(vm.row as never);
  assert.equal(s?.actual, 768 * MiB);
  assert.equal(s?.ceiling, 768 * MiB, 'a resize lowers the ceiling the controller deflates back to');
  assert.equal(s?.used, 200 * MiB);
});

test('a hugepage-backed guest is refused before QEMU runs when the pool is short, saying how to fix it', async () => {
  const { checkHugepages } = await import('../../../src/services/memory.js');
  const { normalizeSpec } = await import('../../../src/core/spec.js');
  const spec = normalizeSpec({ image: 'tiny', cpus: 1, memory: 256 * 1024 * 1024, hugepages: '2M' });
  const pools = [{ size: 2 * 1024 * 1024, total: 100, free: 100 }, { size: 1024 * 1024 * 1024, total: 0, free: 0 }];
  assert.throws(() => checkHugepages(spec, pools), (e: Error & { code?: string; details?: { short?: unknown[] } }) => {
    assert.equal(e.code, 'INSUFFICIENT_RESOURCES');
    assert.match(e.message, /needs 128, the host has 100 free of 100 .*echo 128 > \/sys\/kernel\/mm\/hugepages\/hugepages-2048kB\/nr_hugepages/);
    return true;
  });
  checkHugepages(spec, [{ size: 2 * 1024 * 1024, total: 200, free: 128 }]);
  assert.throws(() => checkHugepages({ ...spec, hugepages: '1G' }, []), /no 1G hugepage pool/);
  checkHugepages({ ...spec, hugepages: null }, []);
});
