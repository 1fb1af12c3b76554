/**
 * The history ring: bounded (the oldest sample overwritten once full, its arrays never grow), read back oldest
 * first with the samples after a time only, and the rates computed between neighbours: CPU % of the vCPUs, bytes
 * per second; none for the first sample, none across a gap (the instance stopped) or a counter that went back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HistoryRing, HISTORY_FIELDS, type HistorySample } from '../../../src/core/history-ring.js';

const MiB = 2 ** 20;

function sample(t: number, over: Partial<HistorySample> = {}): HistorySample {
  return {
    t, vcpuSeconds: t / 1000 / 2, vcpus: 2, residentBytes: 100 * MiB + t, guestResidentBytes: 60 * MiB, configuredBytes: 256 * MiB, balloonBytes: 256 * MiB,
    diskReadBytes: t * 10, diskWriteBytes: t, nicRxBytes: null, nicTxBytes: null, nics: null, ...over,
  };
}

test('a ring keeps the latest N samples, oldest first, and drops the oldest once full', () => {
  const r = new HistoryRing(4);
  assert.equal(r.latest(), null);
  assert.deepEqual(r.series().t, []);
  for (let i = 1; i <= 6; i++) r.push(sample(i * 5000));
  assert.equal(r.length, 4);
  const s = r.series();
  assert.deepEqual(s.t, [15000, 20000, 25000, 30000]);
  assert.deepEqual(s.residentBytes, [100 * MiB + 15000, 100 * MiB + 20000, 100 * MiB + 25000, 100 * MiB + 30000]);
  assert.equal(r.latest()?.t, 30000);
  for (const f of HISTORY_FIELDS) assert.equal(s[f].length, 4, f);
  assert.throws(() => new HistoryRing(1), RangeError);
});

test('since: only what was taken after the time, with rates against the sample before it in the ring', () => {
  const r = new HistoryRing(10);
  for (let i = 1; i <= 5; i++) r.push(sample(i * 5000));
  const s = r.series(15000);
  assert.deepEqual(s.t, [20000, 25000]);
  // half a second of vCPU time per second over 2 vCPUs: 25 %; 10 bytes per ms read, 1 written
  assert.deepEqual(s.cpuPercent, [25, 25]);
  assert.deepEqual(s.diskReadRate, [10000, 10000]);
  assert.deepEqual(s.diskWriteRate, [1000, 1000]);
  assert.deepEqual(s.nicRxRate, [null, null], 'no counter, no rate');
  assert.deepEqual(r.series(25000).t, []);
  assert.equal(r.series().cpuPercent[0], null, 'the first sample has nothing before it');
});

test('a gap (the instance stopped) is a row of nulls, pushed once, and no rate spans it or a counter that went back', () => {
  const r = new HistoryRing(10);
  r.gap(1000);
  assert.equal(r.length, 0, 'no gap before any sample');
  r.push(sample(5000));
  r.push(sample(10000));
  r.gap(15000);
  r.gap(20000);
  assert.equal(r.length, 3, 'one gap row for a stop, however many passes see it stopped');
  // started again: its counters start again from 0
  r.push(sample(25000, { vcpuSeconds: 0.1, diskReadBytes: 512 }));
  r.push(sample(30000, { vcpuSeconds: 1.1, diskReadBytes: 1024 }));
  const s = r.series();
  assert.deepEqual(s.t, [5000, 10000, 15000, 25000, 30000]);
  assert.deepEqual(s.residentBytes[2], null);
  assert.deepEqual(s.cpuPercent, [null, 25, null, null, 10]);
  assert.deepEqual(s.diskReadRate, [null, 10000, null, null, 102.4]);
  r.push(sample(35000, { vcpuSeconds: 0.5, diskReadBytes: 10 }));
  assert.deepEqual(r.series(30000).cpuPercent, [null], 'a counter that went back (a restart) has no rate');
});

test('NIC rates: none across a guest reboot (its agent\'s counters start again) nor when the NICs measured change', () => {
  const r = new HistoryRing(10);
  const nic = (t: number, rx: number, nics = 1): HistorySample => sample(t, { nicRxBytes: rx, nicTxBytes: rx / 2, nics });
  r.push(nic(5000, 50_000));
  r.push(nic(10000, 60_000));
  r.push(nic(15000, 2_000)); // the guest rebooted: /proc/net/dev counts from 0 again
  r.push(nic(20000, 7_000));
  r.push(nic(25000, 1_000, 1)); // a tap-backed NIC alone: the user-mode one's agent did not answer
  r.push(nic(30000, 9_000, 2)); // both again: the sum jumps by what the other NIC counted all along
  r.push(nic(35000, 14_000, 2));
  const s = r.series();
  assert.deepEqual(s.nicRxRate, [null, 2000, null, 1000, null, null, 1000]);
  assert.deepEqual(s.nicTxRate, [null, 1000, null, 500, null, null, 500]);
  assert.deepEqual(s.nics, [1, 1, 1, 1, 1, 2, 2]);
  for (const x of [...s.nicRxRate, ...s.nicTxRate]) assert.ok(x === null || x >= 0, 'never a negative rate');
});

test('its memory is fixed: a thousand pushes leave it as it was', () => {
  const r = new HistoryRing(720);
  for (let i = 0; i < 1000; i++) r.push(sample(i * 5000));
  assert.equal(r.length, 720);
  const s = r.series();
  assert.equal(s.t[0], 280 * 5000);
  assert.equal(s.t.at(-1), 999 * 5000);
});
