/**
 * GET /metrics: the parsing of what it reads (/proc, query-blockstats), the exposition (promtool's own check), and
 * the guard: viewer's role on TCP, no token only with `--metrics-public`, a bad token refused even then; request
 * durations labelled by the route's pattern, never the URL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../src/api/server.js';
import { hostRegistry } from '../../../src/api/metrics.js';
import type { Services } from '../../../src/api/services.js';
import type { PoolView } from '../../../src/core/pool.js';
import { blockSamples, netDev, nicSamples, rssBytes, type InstanceSample } from '../../../src/services/metrics.js';
import { tapName } from '../../../src/core/nics.js';
import { parseTaskStat } from '../../../src/services/cpu-plan.js';
import { authSetup, bearer, LEGACY_TOKEN, type AuthSetup } from './auth-setup.js';
import { recordingServices } from './recording-services.js';

const POOL: PoolView = {
  capacity: { cpus: 8, memory: 8 * 2 ** 30 }, allocated: { cpus: 3, memory: 3 * 2 ** 30, instances: 2 },
  free: { cpus: 5, memory: 5 * 2 ** 30 }, ratios: { cpu: 4, memory: 1 }, reservedMemory: 2 ** 29,
};

const SAMPLES: InstanceSample[] = [
  {
    name: 'web1', uuid: '11111111-1111-4111-8111-111111111111', state: 'running', vcpus: 2, memoryConfigured: 2 ** 30,
    cpuSeconds: 12.5, vcpuSeconds: [{ vcpu: 0, seconds: 5 }, { vcpu: 1, seconds: 4.25 }], residentBytes: 300 * 2 ** 20, guestResidentBytes: 180 * 2 ** 20, balloonBytes: 2 ** 30,
    blocks: [{ device: 'disk0', readBytes: 4096, writeBytes: 8192, readOps: 1, writeOps: 2 }],
    nics: [{ nic: 'net0', source: 'tap', rxBytes: 100, txBytes: 200, rxPackets: 1, txPackets: 2 }, { nic: 'net1', source: 'guest-agent', rxBytes: 300, txBytes: 400, rxPackets: 3, txPackets: 4 }],
  },
  {
    name: 'db "x"', uuid: '22222222-2222-4222-8222-222222222222', state: 'stopped', vcpus: 1, memoryConfigured: 2 ** 29,
    cpuSeconds: null, vcpuSeconds: [], residentBytes: null, guestResidentBytes: null, balloonBytes: null, blocks: [], nics: [],
  },
];

/** The metrics service and the pool stood in for; the instances' other calls refuse as recordingServices' do. */
const metricsServices = (samples = SAMPLES): Partial<Services> => {
  const refusing = recordingServices([]).instances;
  return {
    metrics: { samples: async () => samples } as unknown as Services['metrics'],
    instances: new Proxy(refusing, { get: (t, k) => (k === 'pool' ? () => POOL : Reflect.get(t, k)) }),
  };
};

test('query-blockstats: disks named by their device id; backends without a device are left out', () => {
  const s = { rd_bytes: 1, wr_bytes: 2, rd_operations: 3, wr_operations: 4 };
  assert.deepEqual(blockSamples([
    { qdev: '/machine/peripheral/disk1/virtio-backend', 'node-name': 'n1', stats: s },
    { qdev: '/machine/peripheral-anon/device[3]', stats: s },
    { device: 'ide0-hd0', stats: s },
    { device: '', qdev: '', 'node-name': 'nbd-export', stats: s },
  ]).map((b) => b.device), ['disk1', 'device[3]', 'ide0-hd0']);
  assert.deepEqual(blockSamples([{ qdev: '/machine/peripheral/disk0/virtio-backend', stats: s }])[0], { device: 'disk0', readBytes: 1, writeBytes: 2, readOps: 3, writeOps: 4 });
});

test('/proc: user + system ticks after the command name (which may hold spaces and parentheses); Rss in bytes', () => {
  // (a whole stat line: what the CPU figures are read with is cpu-plan's parseTaskStat, as corral stats reads them)
  const stat = `4242 (qemu (x) sys) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 3 0 12345 ${'0 '.repeat(30)}0`;
  assert.equal(parseTaskStat(stat)?.ticks, 200);
  assert.equal(rssBytes('Rss:              123456 kB\nPss: 1 kB\n'), 123456 * 1024);
  assert.equal(rssBytes('Name: qemu\nVmRSS:\t   2048 kB\n'), 2048 * 1024);
  assert.equal(rssBytes('nothing'), null);
});

test('the exposition: promtool\'s own check passes, counters end in _total, every instance series has name and uuid', (t) => {
  return hostRegistry(SAMPLES, POOL).metrics().then((out) => {
    assert.match(out, /^corral_instance_state\{name="web1",uuid="11111111-1111-4111-8111-111111111111",state="running"\} 1$/m);
    assert.match(out, /^corral_instance_state\{name="db \\"x\\"",uuid="22222222-[0-9a-f-]+",state="stopped"\} 1$/m, 'label values are escaped');
    assert.match(out, /^# TYPE corral_instance_cpu_seconds_total counter$/m);
    assert.match(out, /^corral_instance_cpu_seconds_total\{name="web1",[^}]*\} 12\.5$/m);
    assert.match(out, /^corral_instance_vcpu_seconds_total\{name="web1",uuid="[^"]+",vcpu="1"\} 4\.25$/m);
    assert.match(out, /^corral_instance_disk_written_bytes_total\{name="web1",uuid="[^"]+",device="disk0"\} 8192$/m);
    assert.match(out, /^corral_instance_network_receive_bytes_total\{name="web1",uuid="[^"]+",nic="net0",source="tap"\} 100$/m);
    assert.match(out, /^corral_instance_network_transmit_packets_total\{name="web1",uuid="[^"]+",nic="net1",source="guest-agent"\} 4$/m);
    assert.match(out, /^# HELP corral_instance_network_receive_bytes_total .*"guest-agent": reported by the guest/m);
    assert.match(out, /^corral_instance_memory_guest_resident_bytes\{name="web1",uuid="[^"]+"\} 188743680$/m);
    assert.doesNotMatch(out, /guest_resident_bytes\{name="db/, 'not measured: no figure');
    assert.match(out, /^corral_pool_allocated_memory_bytes 3221225472$/m);
    assert.match(out, /^corral_pool_overcommit_ratio\{resource="cpu"\} 4$/m);
    assert.doesNotMatch(out, /cpu_seconds_total\{name="db/, 'a stopped instance has no CPU figure, not a zero');
    for (const line of out.split('\n').filter((l) => l.startsWith('corral_instance_'))) assert.match(line, /\{name="[^"]*(?:\\"[^"]*)*",uuid="/, line);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: out, encoding: 'utf8' });
    if (check.error) {
      t.skip('promtool is not installed (scripts/host-deps.sh installs Debian\'s prometheus)');
      return;
    }
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`);
    assert.equal(`${check.stdout}${check.stderr}`.trim(), '', 'no lint finding either');
  });
});

test('/proc/net/dev: a tap\'s counters turned around are the guest\'s; NICs without a tap or agent figures are left out', () => {
  const uuid = '11111111-1111-4111-8111-111111111111';
  const tap = tapName(uuid, 'net0');
  const dev = netDev([
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0',
    `${tap}:  5000  50 0 0 0 0 0 0  7000  70 0 0 0 0 0 0`,
  ].join('\n'));
  assert.deepEqual(dev.get('lo'), { rxBytes: 1000, rxPackets: 10, txBytes: 1000, txPackets: 10 });
  const spec = { nics: [{ id: 'net0', mac: '52:54:00:00:00:01' }, { id: 'net1', mac: '52:54:00:00:00:02' }] } as unknown as Parameters<typeof nicSamples>[0]['spec'];
  assert.deepEqual(nicSamples({ uuid, spec }, dev), [{ nic: 'net0', source: 'tap', rxBytes: 7000, txBytes: 5000, rxPackets: 70, txPackets: 50 }]);
  assert.deepEqual(nicSamples({ uuid, spec }, dev, null), nicSamples({ uuid, spec }, dev), 'the agent did not answer: no figures, not zeros');
});

test('a NIC with no tap (user-mode networking): the guest agent\'s counters of the interface with its MAC, already the guest\'s side', () => {
  const uuid = '11111111-1111-4111-8111-111111111111';
  const dev = netDev(`${tapName(uuid, 'net0')}:  5000  50 0 0 0 0 0 0  7000  70 0 0 0 0 0 0`);
  const spec = { nics: [{ id: 'net0', mac: '52:54:00:00:00:01' }, { id: 'net1', mac: '52:54:00:00:00:02' }, { id: 'net2', mac: '52:54:00:00:00:03' }] } as unknown as Parameters<typeof nicSamples>[0]['spec'];
  const guest = [
    // the guest also counts the tap-backed NIC: the host's figures win
    { name: 'eth0', mac: '52:54:00:00:00:01', rxBytes: 1, rxPackets: 1, txBytes: 1, txPackets: 1 },
    { name: 'eth1', mac: '52:54:00:00:00:02', rxBytes: 9000, rxPackets: 90, txBytes: 1200, txPackets: 12 },
  ];
  assert.deepEqual(nicSamples({ uuid, spec }, dev, guest), [
    { nic: 'net0', source: 'tap', rxBytes: 7000, txBytes: 5000, rxPackets: 70, txPackets: 50 },
    { nic: 'net1', source: 'guest-agent', rxBytes: 9000, txBytes: 1200, rxPackets: 90, txPackets: 12 },
  ], 'net2: no guest interface has its MAC, so no figures');
});

let auth: AuthSetup;
let open: FastifyInstance;

before(async () => {
  auth = await authSetup(metricsServices());
  open = await buildApi(recordingServices([], { tokens: auth.tokens, ...metricsServices() }), { token: LEGACY_TOKEN, metricsPublic: true });
});

after(async () => {
  await open?.close();
  await auth?.close();
});

test('GET /metrics on TCP: a token is needed (viewer is enough); --metrics-public serves it without one, and nothing else', async () => {
  assert.equal((await auth.tcp.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
  const viewer = await auth.tcp.inject({ method: 'GET', url: '/metrics', headers: bearer(auth.secret.viewer) });
  assert.equal(viewer.statusCode, 200);
  assert.match(String(viewer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  assert.match(viewer.body, /^corral_instance_memory_configured_bytes\{name="web1",[^}]*\} 1073741824$/m);
  assert.equal((await auth.unix.inject({ method: 'GET', url: '/metrics' })).statusCode, 200, 'the unix socket is root\'s');

  assert.equal((await open.inject({ method: 'GET', url: '/metrics' })).statusCode, 200);
  assert.equal((await open.inject({ method: 'GET', url: '/metrics', headers: bearer('not-a-token') })).statusCode, 401, 'a token shown is checked');
  assert.equal((await open.inject({ method: 'GET', url: '/v1/instances' })).statusCode, 401, 'only /metrics is open');
  assert.equal((await open.inject({ method: 'GET', url: '/v1/pool' })).statusCode, 401);
});

test('request durations are labelled by the route\'s pattern and status, never by the URL asked', async () => {
  await auth.unix.inject({ method: 'GET', url: '/v1/instances/some-name-1' });
  await auth.unix.inject({ method: 'GET', url: '/v1/instances/some-name-2' });
  await auth.unix.inject({ method: 'GET', url: '/no/such/route' });
  const out = (await auth.unix.inject({ method: 'GET', url: '/metrics' })).body;
  assert.match(out, /^corral_http_request_duration_seconds_count\{method="GET",route="\/v1\/instances\/:name",status_code="409"\} [2-9]\d*$/m);
  assert.match(out, /route="unmatched",status_code="404"/);
  assert.doesNotMatch(out, /some-name/);
  assert.match(out, /^corral_daemon_cpu_seconds_total \d/m, 'the daemon\'s own process figures');
  assert.match(out, /^corral_daemon_resident_memory_bytes [1-9]\d*$/m);
  const check = spawnSync('promtool', ['check', 'metrics'], { input: out, encoding: 'utf8' });
  if (!check.error) assert.equal(`${check.stdout}${check.stderr}`.trim() + String(check.status), '0', 'promtool finds nothing in the whole answer either');
});
