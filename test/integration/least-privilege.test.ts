/**
 * Least privilege, as `ps` and `ls -l` show it: a guest with a bridge NIC, a virtio-blk volume and a
 * vhost-user-blk volume runs with QEMU, its qemu-storage-daemon and its console keeper as corral-qemu (no
 * capabilities, no_new_privs; QEMU under seccomp) and the network's dnsmasq as corral-dnsmasq; nothing of theirs
 * runs as root. The files the VM opens
 * are corral-qemu's only while it runs (a hot-plugged volume from its attach to its detach), and that user can
 * open nothing else of the daemon's: not a detached volume, not the database, not the token.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConsoleSession, Daemon, SKIP_NO_TINY, useDaemon, waitFor } from './harness.js';

const skip = SKIP_NO_TINY;
const NS = `corral-lp-${process.pid}`;
let d: Daemon;
useDaemon((x) => { d = x; }, { netns: NS });

function idOf(db: 'passwd' | 'group', name: string): number {
  return Number(execFileSync('getent', [db, name], { encoding: 'utf8' }).split(':')[2]);
}

/** The Uid/Gid/Groups/Cap and NoNewPrivs/Seccomp lines of /proc/PID/status. */
function creds(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const m = /^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

/** Processes whose command line names this daemon's data dir, with their program and real uid. */
function processesOf(dataDir: string): Array<{ pid: number; prog: string; uid: number }> {
  const out: Array<{ pid: number; prog: string; uid: number }> = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (!argv.some((a) => a.includes(dataDir))) continue;
      out.push({ pid: Number(e), prog: argv[0]!, uid: Number(creds(Number(e)).Uid!.split(/\s+/)[0]) });
    } catch {
      /* raced */
    }
  }
  return out;
}

function owner(path: string): string {
  const st = statSync(path);
  return `${st.uid}:${(st.mode & 0o7777).toString(8)}`;
}

/** Can corral-qemu (as QEMU runs: its uid and gid, no other group) read `path`? */
function qemuUserCanRead(path: string): boolean {
  return spawnSync('setpriv', ['--reuid=corral-qemu', '--regid=corral-qemu', '--clear-groups', '--', 'head', '-c1', path], { stdio: 'ignore' }).status === 0;
}

/** Every file under `dir` owned by `uid`. */
function ownedBy(dir: string, uid: number): string[] {
  return execFileSync('find', [dir, '-uid', String(uid)], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

test('QEMU, its storage daemon and dnsmasq run unprivileged; the VM\'s files are corral-qemu\'s only while it runs', { skip, timeout: 300_000 }, async () => {
  const qemuUid = idOf('passwd', 'corral-qemu');
  const qemuGid = idOf('group', 'corral-qemu');
  const dnsmasqUid = idOf('passwd', 'corral-dnsmasq');
  const root = `0:600`;
  const mine = `${qemuUid}:600`;
  await d.ok('POST', '/v1/networks', { name: 'lpnet', kind: 'bridge', cidr: '10.93.0.0/24', nat: false }, 201);
  const vol = await d.ok('POST', '/v1/volumes', { name: 'data1', size: '16M' }, 201);
  const fast = await d.ok('POST', '/v1/volumes', { name: 'fast1', size: '16M' }, 201);
  const spare = await d.ok('POST', '/v1/volumes', { name: 'spare', size: '16M' }, 201);
  const hot = await d.ok('POST', '/v1/volumes', { name: 'hot1', size: '16M' }, 201);
  assert.equal(owner(vol.path), root, 'a new volume is root\'s, 0600');
  const vm = await d.ok('POST', '/v1/instances', { name: 'lp', image: 'tiny', network: 'lpnet' }, 201);
  assert.equal((await d.cli(['disk', 'attach', 'lp', 'data1'])).code, 0);
  assert.equal((await d.cli(['disk', 'attach', 'lp', 'fast1', '--bus', 'vhost-user-blk'])).code, 0);
  const inst = join(d.dataDir, 'instances', vm.uuid);
  const run = join(d.dataDir, 'run', vm.uuid);
  assert.equal(owner(join(inst, 'root.qcow2')), root, 'a stopped instance\'s disk is root\'s');

  const started = await d.ok('POST', '/v1/instances/lp/start', {});
  await d.waitConsole('lp', /corral-tiny ready/, 120_000);

  // ps: nothing of this daemon's runs as root; QEMU and its storage daemon have no capability at all
  const procs = processesOf(d.dataDir);
  const qemu = procs.find((p) => p.pid === started.pid)!;
  assert.match(qemu.prog, /qemu-system/);
  const qsd = procs.find((p) => /qemu-storage-daemon/.test(p.prog));
  assert.ok(qsd, 'the vhost-user-blk volume has its storage daemon');
  const dnsmasq = procs.find((p) => /dnsmasq/.test(p.prog));
  assert.ok(dnsmasq, 'the network has its dnsmasq');
  const keeper = procs.find((p) => p.prog === `corral-console-keeper ${join(d.dataDir, 'instances', vm.uuid, 'console.log')}`);
  assert.ok(keeper, 'the VM has its console keeper');
  assert.deepEqual(procs.filter((p) => p.uid === 0).map((p) => p.prog), [], 'no QEMU, storage daemon, console keeper or dnsmasq runs as root');
  for (const pid of [qemu.pid, qsd.pid, keeper.pid]) {
    const c = creds(pid);
    assert.deepEqual(c.Uid!.split(/\s+/), Array(4).fill(String(qemuUid)), `pid ${pid} runs as corral-qemu (real, effective, saved, fs)`);
    assert.equal(c.Gid!.split(/\s+/)[0], String(qemuGid));
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(BigInt(`0x${c[set]}`), 0n, `pid ${pid} ${set}`);
    assert.equal(c.NoNewPrivs, '1');
  }
  assert.equal(creds(qemu.pid).Seccomp, '2', 'QEMU runs under its seccomp sandbox');
  assert.equal(dnsmasq.uid, dnsmasqUid, 'dnsmasq dropped to corral-dnsmasq');
  assert.equal(BigInt(`0x${creds(dnsmasq.pid).CapEff}`) & (1n << 21n), 0n, 'dnsmasq has no CAP_SYS_ADMIN');

  // the tap is made for corral-qemu, and it works: the guest gets its lease
  const nic = (await d.ok('GET', '/v1/instances/lp/nics')).nics[0];
  const tap = JSON.parse(execFileSync('ip', ['-n', NS, '-d', '-j', 'link', 'show', nic.tap], { encoding: 'utf8' }))[0].linkinfo.info_data;
  assert.ok(tap.user === 'corral-qemu' || tap.user === qemuUid, JSON.stringify(tap));
  const c = await ConsoleSession.open(d, 'lp');
  try {
    const out = await c.run('i=0; while [ $i -lt 100 ] && [ ! -e /run/udhcpc.eth0.up ]; do sleep 0.2; i=$((i+1)); done; ip -4 -o addr show eth0', 40_000);
    assert.match(out, /inet 10\.93\.0\.\d+\//, out);
    // the guest writes its volume (QEMU opened it read-write as corral-qemu)
    await c.run("dd if=/dev/zero bs=64k count=1 2>/dev/null | tr '\\000' '\\132' | dd of=/dev/vdb bs=64k conv=fsync 2>/dev/null; sync");
  } finally {
    await c.close();
  }

  // while it runs: its files are corral-qemu's; everything else stays root's and closed to corral-qemu
  for (const f of [join(inst, 'root.qcow2'), join(inst, 'console.log'), join(inst, 'console.log.1'), vol.path, fast.path]) assert.equal(owner(f), mine, f);
  assert.equal(owner(run), `${qemuUid}:700`, 'the runtime dir (its sockets) is QEMU\'s');
  assert.equal(statSync(join(run, 'qga.sock')).uid, qemuUid, 'QEMU made the guest agent\'s socket in its runtime dir (the daemon connects to it)');
  assert.equal(owner(inst), '0:711', 'the instance dir is root\'s: QEMU opens what it was given, lists and makes nothing');
  assert.equal(owner(join(inst, 'qemu.stderr')), root);
  assert.equal(owner(spare.path), root);
  assert.ok(qemuUserCanRead(join(inst, 'root.qcow2')), 'corral-qemu reads the disk of the running VM');
  for (const f of [spare.path, join(d.dataDir, 'corral.db'), join(d.dataDir, 'token'), join(inst, 'qemu.stderr')]) {
    assert.ok(!qemuUserCanRead(f), `corral-qemu cannot read ${f}`);
  }
  assert.notEqual(spawnSync('setpriv', ['--reuid=corral-qemu', '--regid=corral-qemu', '--clear-groups', '--', 'ls', join(d.dataDir, 'instances')]).status, 0, 'corral-qemu cannot list the instances');

  // a hot-plugged volume is QEMU's from its attach to its detach
  assert.equal((await d.cli(['disk', 'attach', 'lp', 'hot1'])).code, 0);
  assert.equal(owner(hot.path), mine);
  const det = await d.cli(['disk', 'detach', 'lp', 'hot1']);
  assert.equal(det.code, 0, det.stderr);
  assert.equal(owner(hot.path), root);

  await d.ok('POST', '/v1/instances/lp/kill', {});
  await waitFor(() => processesOf(d.dataDir).every((p) => !/qemu|corral-console-keeper/.test(p.prog)), 20_000, 'QEMU, its storage daemon and its console keeper to end');
  for (const f of [join(inst, 'root.qcow2'), join(inst, 'console.log'), join(inst, 'console.log.1'), vol.path, fast.path]) assert.equal(owner(f), root, `${f} is taken back`);
  assert.deepEqual(ownedBy(d.dataDir, qemuUid), [], 'corral-qemu owns nothing in the data dir once the VM is stopped');
  assert.match(execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0x5a 0 64k', vol.path], { encoding: 'utf8' }), /read 65536\/65536/, 'what the guest wrote is on the volume');
});
