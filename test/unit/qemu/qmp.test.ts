import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import {
  QmpClient, QmpCommandError, QmpDisconnectedError, QmpError, QmpTimeoutError,
  type QmpConnectOptions, type QmpEvent, type QmpLogger,
} from '../../../src/qemu/qmp.js';
import { startMockQmp, type MockAction, type MockHandler, type MockQmpServer, type MockQmpOptions } from './mock-qmp.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempSocket(): string {
  const dir = mkdtempSync(join(tmpdir(), 'corral-qmp-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'qmp.sock');
  assert.ok(Buffer.byteLength(path) < 108, `socket path too long: ${path}`);
  return path;
}

interface Setup { srv: MockQmpServer; client: QmpClient; logs: Array<[string, string]> }
async function setup(handlers: Record<string, MockHandler | MockAction> = {}, opts: QmpConnectOptions = {}, mockOpts: MockQmpOptions = {}): Promise<Setup> {
  const path = tempSocket();
  const srv = await startMockQmp(path, handlers, mockOpts);
  cleanups.push(() => srv.close());
  const logs: Array<[string, string]> = [];
  const logger: QmpLogger = (level, message) => { logs.push([level, message]); };
  const client = await QmpClient.connect(path, { logger, ...opts });
  cleanups.push(() => client.close());
  return { srv, client, logs };
}

/**
 * Resolves once the client's socket has closed and emitted 'close', which the client handles before any
 * listener added here: past this, the socket can no longer make the client emit 'close' again. A positive
 * signal that the moment has passed, instead of a fixed sleep before asserting that no second 'close' came.
 */
async function socketClosed(client: QmpClient): Promise<void> {
  const socket = (client as unknown as { socket: Socket }).socket;
  assert.ok(socket, 'the client keeps its socket in `socket`');
  if (!socket.closed) await once(socket, 'close');
}

function countCloses(client: QmpClient): { count: () => number; reasons: QmpDisconnectedError[]; closed: Promise<QmpDisconnectedError> } {
  const reasons: QmpDisconnectedError[] = [];
  const closed = new Promise<QmpDisconnectedError>((resolve) => client.on('close', (r) => { reasons.push(r); resolve(r); }));
  return { count: () => reasons.length, reasons, closed };
}

describe('QmpClient against the mock QMP server', () => {
  it('reads the greeting and negotiates capabilities before anything else', async () => {
    const { srv, client } = await setup();
    assert.deepEqual(client.greeting?.version.qemu, { major: 7, minor: 2, micro: 0 });
    assert.match(client.greeting?.version.package ?? '', /Debian/);
    assert.deepEqual(client.greeting?.capabilities, ['oob']);
    assert.equal(srv.calls[0]?.command, 'qmp_capabilities');
    assert.equal(srv.calls[0]?.args, undefined, 'no oob capability is enabled');
    assert.equal(client.closed, false);
    assert.deepEqual(await client.execute<{ status: string; running: boolean }>('query-status'), { status: 'running', singlestep: false, running: true });
    assert.deepEqual(await client.execute<{ enabled: boolean; present: boolean }>('query-kvm'), { enabled: false, present: true });
    assert.equal((await client.execute<Array<{ 'thread-id': number }>>('query-cpus-fast'))[0]?.['thread-id'], 4242);
    await client.execute('stop'); await client.execute('cont'); await client.execute('system_reset'); await client.execute('system_powerdown');
    assert.deepEqual(srv.calls.map((c) => c.command).slice(-4), ['stop', 'cont', 'system_reset', 'system_powerdown']);
  });

  it('matches replies to commands by id when answered out of order', async () => {
    const { srv, client } = await setup({ 'cmd-a': { stall: true }, 'cmd-b': { stall: true } });
    const a = client.execute('cmd-a', { n: 1 });
    const b = client.execute('cmd-b', { n: 2 });
    const [ca, cb] = await Promise.all([srv.waitForCall('cmd-a'), srv.waitForCall('cmd-b')]);
    assert.notEqual(ca.id, cb.id);
    assert.deepEqual(ca.args, { n: 1 });
    await cb.reply({ who: 'b' });
    assert.deepEqual(await b, { who: 'b' });
    await ca.reply({ who: 'a' });
    assert.deepEqual(await a, { who: 'a' });
  });

  it('turns an error reply into QmpCommandError with class and desc', async () => {
    const { client } = await setup({ device_del: { error: { class: 'DeviceNotFound', desc: "Device 'nic0' not found" } } });
    const err = await client.execute('device_del', { id: 'nic0' }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof QmpCommandError && err instanceof QmpError);
    assert.equal(err.qmpClass, 'DeviceNotFound');
    assert.equal(err.desc, "Device 'nic0' not found");
    assert.equal(err.command, 'device_del');
    await assert.rejects(client.execute('no-such-command'), (e) => e instanceof QmpCommandError && e.qmpClass === 'CommandNotFound');
    assert.equal(client.closed, false);
  });

  it('times a command out, drops its late reply and stays usable', async () => {
    const { srv, client, logs } = await setup({ slow: { stall: true } });
    const t0 = Date.now();
    const err = await client.execute('slow', undefined, { timeoutMs: 150 }).then(() => null, (e: unknown) => e);
    assert.ok(err instanceof QmpTimeoutError, String(err));
    assert.equal(err.command, 'slow');
    assert.equal(err.timeoutMs, 150);
    assert.ok(Date.now() - t0 >= 140);
    assert.equal(client.closed, false);
    await (await srv.waitForCall('slow')).reply({ late: true });
    assert.equal((await client.execute<{ status: string; running: boolean }>('query-status')).status, 'running');
    assert.ok(logs.some(([, m]) => /unknown id/.test(m)), 'the late reply is logged and dropped');
  });

  it('rejects every pending command when the connection drops, and emits close once', async () => {
    const { srv, client } = await setup({ slow: { stall: true }, slower: { stall: true } });
    const closes = countCloses(client);
    const p1 = client.execute('slow');
    const p2 = client.execute('slower');
    await srv.waitForCall('slower');
    srv.dropAll();
    await assert.rejects(p1, (e) => e instanceof QmpDisconnectedError && e.command === 'slow');
    await assert.rejects(p2, QmpDisconnectedError);
    await closes.closed;
    assert.equal(client.closed, true);
    await socketClosed(client); // the drop has fully happened; close() now can only emit synchronously
    client.close();
    assert.equal(closes.count(), 1);
    assert.ok(closes.reasons[0] instanceof QmpDisconnectedError);
    await assert.rejects(client.execute('query-status'), QmpDisconnectedError);
  });

  it('close() rejects pending commands and emits close exactly once', async () => {
    const { client } = await setup({ slow: { stall: true } });
    const closes = countCloses(client);
    const p = client.execute('slow');
    client.close();
    client.close();
    await assert.rejects(p, QmpDisconnectedError);
    await socketClosed(client); // the socket's own 'close', the only later source of a second one, has come
    assert.equal(closes.count(), 1);
    assert.match(closes.reasons[0]?.message ?? '', /closed by client/);
  });

  it('handles a reply followed by a drop, and a drop without a reply', async () => {
    const { client } = await setup({ bye: { return: { ok: 1 }, dropAfter: true } });
    const closes = countCloses(client);
    assert.deepEqual(await client.execute('bye'), { ok: 1 });
    await closes.closed;
    const second = await setup({ vanish: { drop: true } });
    await assert.rejects(second.client.execute('vanish'), QmpDisconnectedError);
    const third = await setup();
    const c3 = countCloses(third.client);
    await third.client.quit();
    await c3.closed;
  });

  it('delivers events while commands are pending', async () => {
    const { srv, client } = await setup({ slow: { stall: true } });
    const events: QmpEvent[] = [];
    client.on('event', (e) => events.push(e));
    const p = client.execute('slow');
    const call = await srv.waitForCall('slow');
    await srv.sendEvent('STOP');
    await srv.sendEvent('DEVICE_DELETED', { device: 'nic0', path: '/machine/peripheral/nic0' });
    while (events.length < 2) await sleep(5);
    assert.equal(events[0]?.event, 'STOP');
    assert.deepEqual(events[0]?.data, {});
    assert.equal(typeof events[0]?.timestamp.seconds, 'number');
    assert.equal(events[1]?.data.device, 'nic0');
    await call.reply({ done: true });
    assert.deepEqual(await p, { done: true });
  });

  it('survives a throwing event listener', async () => {
    const { srv, client, logs } = await setup();
    client.on('event', () => { throw new Error('listener bug'); });
    await srv.sendEvent('RESUME');
    // the reply to this command comes after the event on the same socket: it is read once the listener has thrown
    assert.equal((await client.execute<{ status: string; running: boolean }>('query-status')).running, true);
    assert.ok(logs.some(([l, m]) => l === 'warn' && /listener bug/.test(m)));
  });

  it('parses replies split byte by byte, multi-byte characters included', async () => {
    const { srv, client } = await setup({
      split: { return: { text: 'héllo wörld ✓', n: [1, 2, 3] }, chunkSize: 1, pauseMs: 1 },
      'split-err': { error: { class: 'GenericError', desc: 'ünïcödé failure' }, chunkSize: 3 },
    });
    const events: QmpEvent[] = [];
    client.on('event', (e) => events.push(e));
    const ev = srv.connections[0]!.sendEvent('BLOCK_JOB_READY', { device: 'd0' }, { chunkSize: 1, pauseMs: 0 });
    assert.deepEqual(await client.execute('split'), { text: 'héllo wörld ✓', n: [1, 2, 3] });
    await assert.rejects(client.execute('split-err'), (e) => e instanceof QmpCommandError && e.desc === 'ünïcödé failure');
    await ev;
    assert.equal(events[0]?.event, 'BLOCK_JOB_READY');
  });

  it('parses several messages coalesced in one chunk, skipping blank and malformed lines', async () => {
    const { srv, client, logs } = await setup({ a: { stall: true }, b: { stall: true } });
    const events: QmpEvent[] = [];
    client.on('event', (e) => events.push(e));
    const pa = client.execute('a');
    const pb = client.execute('b');
    const [ca, cb] = await Promise.all([srv.waitForCall('a'), srv.waitForCall('b')]);
    const ts = { seconds: 1, microseconds: 2 };
    const text = [
      JSON.stringify({ event: 'STOP', timestamp: ts }), '', JSON.stringify({ return: 'B', id: cb.id }),
      '{not json', '[1,2]', JSON.stringify({ return: 'A', id: ca.id }), JSON.stringify({ event: 'RESUME', timestamp: ts }), '',
    ].join('\r\n');
    await ca.connection.writeRaw(text);
    assert.deepEqual(await Promise.all([pa, pb]), ['A', 'B']);
    assert.deepEqual(events.map((e) => e.event), ['STOP', 'RESUME']);
    assert.equal(logs.filter(([l]) => l === 'warn').length, 2, 'two malformed lines logged');
    assert.equal(client.closed, false);
  });
});

describe('QmpClient.connect', () => {
  it('retries until the socket appears (ENOENT, then ECONNREFUSED on a non-socket file)', async () => {
    const path = tempSocket();
    const t0 = Date.now();
    const pending = QmpClient.connect(path, { retry: true, timeoutMs: 5000 });
    await sleep(150);
    writeFileSync(path, '');
    await sleep(150);
    const srv = await startMockQmp(path);
    cleanups.push(() => srv.close());
    const client = await pending;
    cleanups.push(() => client.close());
    assert.ok(Date.now() - t0 >= 290);
    assert.equal((await client.execute<{ qemu: { major: number } }>('query-version')).qemu.major, 7);
  });

  it('times out when nothing ever listens', async () => {
    const path = tempSocket();
    const t0 = Date.now();
    await assert.rejects(QmpClient.connect(path, { retry: true, timeoutMs: 300 }),
      (e) => e instanceof QmpTimeoutError && e.command === 'connect' && e.timeoutMs === 300);
    const elapsed = Date.now() - t0;
    assert.ok(elapsed >= 280 && elapsed < 2000, `elapsed ${elapsed}`);
    await assert.rejects(QmpClient.connect(path), QmpDisconnectedError, 'without retry ENOENT fails at once');
  });

  it('times out when the greeting never comes', async () => {
    const path = tempSocket();
    const srv = await startMockQmp(path, {}, { greeting: false });
    cleanups.push(() => srv.close());
    const connecting = QmpClient.connect(path, { timeoutMs: 200 });
    const conn = await srv.waitForConnection(); // the server holds the connection: its closing is something to see
    await assert.rejects(connecting, (e) => e instanceof QmpTimeoutError && e.command === 'greeting');
    await conn.waitClosed(2000);
    assert.equal(srv.connections.length, 0, 'the failed connection is closed');
  });

  it('with redialMs, a connection whose greeting was lost is closed and the socket dialled again', async () => {
    const path = tempSocket();
    const srv = await startMockQmp(path, {}, { loseGreetings: 2 });
    cleanups.push(() => srv.close());
    const connecting = QmpClient.connect(path, { timeoutMs: 5000, redialMs: 150 });
    const first = await srv.waitForConnection();
    const client = await connecting;
    cleanups.push(() => client.close());
    assert.ok(client.greeting, 'greeted on the third connection');
    await first.waitClosed(2000);
    assert.equal(srv.connections.length, 1, 'only the greeted connection is left');
  });

  it('refuses a socket path too long for sun_path', async () => {
    await assert.rejects(QmpClient.connect('/tmp/' + 'x'.repeat(120)), QmpDisconnectedError);
  });
});

function onPath(cmd: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => {
    try { accessSync(join(d, cmd), constants.X_OK); return true; } catch { return false; }
  });
}

describe('QmpClient against a real QEMU', () => {
  it('queries version and status, then quits', async (t) => {
    if (!onPath('qemu-system-x86_64')) {
      t.skip('qemu-system-x86_64 is not on PATH: real-QEMU QMP test skipped');
      return;
    }
    const path = tempSocket();
    const qemu = spawn('qemu-system-x86_64', ['-nodefaults', '-no-user-config', '-machine', 'none', '-accel', 'tcg',
      '-display', 'none', '-qmp', `unix:${path},server=on,wait=off`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    qemu.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => qemu.on('exit', (code) => resolve(code)));
    cleanups.push(() => { if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL'); });
    const client = await QmpClient.connect(path, { retry: true, timeoutMs: 10_000 }).catch((e: Error) => {
      throw new Error(`${e.message}; qemu stderr: ${stderr}`);
    });
    cleanups.push(() => client.close());
    assert.ok((client.greeting?.version.qemu.major ?? 0) >= 7);
    const v = await client.execute<{ qemu: { major: number } }>('query-version');
    assert.ok(v.qemu.major >= 7, JSON.stringify(v));
    const st = await client.execute<{ status: string; running: boolean }>('query-status');
    assert.equal(typeof st.status, 'string');
    assert.equal(typeof st.running, 'boolean');
    assert.equal((await client.execute<{ enabled: boolean; present: boolean }>('query-kvm')).enabled, false, 'TCG, not KVM');
    await assert.rejects(client.execute('no-such-command'), (e) => e instanceof QmpCommandError && e.qmpClass === 'CommandNotFound');
    const closed = new Promise((resolve) => client.once('close', resolve));
    await client.quit();
    await closed;
    assert.equal(await exited, 0);
  });
});
