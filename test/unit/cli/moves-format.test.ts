/** The lines `corral host evacuate` and `corral pool rebalance` print (src/cli/moves.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evacuationOutcomeLine, moveLine, rebalanceSummary } from '../../../src/cli/moves.js';
import { planRebalance } from '../../../src/core/rebalance.js';
import { GiB, MiB } from '../../../src/core/units.js';

test('an evacuation\'s outcome per instance: live-migrated with its figures, moved stopped, or left with its code', () => {
  assert.equal(evacuationOutcomeLine({ instance: 'g1', outcome: 'migrated', from: 'a1', to: 'a2', totalMs: 812, downtimeMs: 41 }), 'g1: live-migrated to a2 in 812 ms (downtime 41 ms)');
  assert.equal(evacuationOutcomeLine({ instance: 's1', outcome: 'moved', from: 'a1', to: 'a3' }), 's1: stopped, its record moved to a3');
  assert.equal(evacuationOutcomeLine({ instance: 'l1', outcome: 'left', code: 'NOT_MIGRATABLE', reason: 'root disk: on the host\'s local pool' }), 'l1: left: NOT_MIGRATABLE: root disk: on the host\'s local pool');
});

test('a proposed move shows both hosts\' allocation before and after, and the summary the spread', () => {
  const vms = [1, 2, 3].map((k) => ({ name: `g${k}`, host: 'a2', cpus: 1, memory: 64 * MiB, shared: true, movable: true }));
  const hosts = [
    { name: 'a1', capacity: { cpus: 8, memory: 23 * GiB }, allocated: { cpus: 0, memory: 0 }, sharedPool: true },
    { name: 'a2', capacity: { cpus: 8, memory: 23 * GiB }, allocated: { cpus: 3, memory: 192 * MiB }, sharedPool: true },
  ];
  const p = planRebalance(hosts, vms);
  assert.equal(moveLine(p.moves[0]!),
    'move g1 (1 vCPU, 64 MiB) a2 -> a1: a2 37.5% -> 25.0% (vCPUs 3/8 -> 2/8, memory 192 MiB -> 128 MiB of 23 GiB); a1 0.0% -> 12.5% (vCPUs 0/8 -> 1/8, memory 0 B -> 64 MiB of 23 GiB)');
  const base = { skipped: [], spreadBefore: 0.375, spreadAfter: 0.125, even: false, tolerance: 0.05 };
  assert.equal(rebalanceSummary({ ...base, dryRun: true, moves: p.moves.map((m) => ({ ...m, outcome: 'proposed' as const })) }),
    'dry run: 1 move proposed, nothing moved; the spread of the hosts\' dominant shares 37.5% -> 12.5%');
  assert.equal(rebalanceSummary({ ...base, dryRun: false, moves: p.moves.map((m) => ({ ...m, outcome: 'migrated' as const, totalMs: 1, downtimeMs: 1 })) }),
    '1 move made; the spread of the hosts\' dominant shares 37.5% -> 12.5%');
  assert.equal(rebalanceSummary({ ...base, dryRun: false, moves: [], spreadBefore: 0.02, spreadAfter: 0.02, even: true }), 'the pool is even (spread 2.0%, within 5.0%): nothing to move');
  assert.equal(rebalanceSummary({ ...base, dryRun: false, moves: [], spreadAfter: 0.375 }), 'no move makes the pool more even (spread 37.5%): nothing to move');
});
