/** `corral exec`, and what the guest agent adds to `show` and `stop`, against the fake API. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli, useFakeApi } from './fake-api.js';

const fake = useFakeApi();

function lastBody(url: string): Record<string, unknown> {
  const r = [...fake.api.requests].reverse().find((x) => x.method === 'POST' && x.url === url);
  assert.ok(r, `expected a POST ${url}`);
  return JSON.parse(r.body) as Record<string, unknown>;
}

test('exec writes the command\'s bytes to stdout and stderr as they came and exits with its exit code', async () => {
  const r = await runCli(['exec', 'web1', '--', 'sh', '-c', 'echo out; exit 3'], fake.env);
  assert.equal(r.code, 3);
  assert.deepEqual(r.stdoutBytes, Buffer.concat([Buffer.from('ran sh -c echo out; exit 3\n'), Buffer.from([0xff, 0x0a])]), 'bytes that are not UTF-8 pass through');
  assert.equal(r.stderr, 'err\n');
  assert.deepEqual(lastBody('/v1/instances/web1/exec'), { command: ['sh', '-c', 'echo out; exit 3'], encoding: 'base64' });
});

test('exec --stdin sends what it reads; --timeout goes to the API; options after -- are the command\'s', async () => {
  const r = await runCli(['exec', 'web1', '--stdin', '--timeout', '9', '--', 'cat', '--json'], fake.env, 'hello\n');
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /^ran cat --json\nhello\n/);
  assert.deepEqual(lastBody('/v1/instances/web1/exec'), { command: ['cat', '--json'], encoding: 'base64', stdin: Buffer.from('hello\n').toString('base64'), timeout: 9 });
});

test('exec --json prints the result with stdout and stderr as text, and still exits with the command\'s code', async () => {
  const r = await runCli(['exec', 'web1', '--json', '--', 'true'], fake.env);
  assert.equal(r.code, 3);
  const j = JSON.parse(r.stdout) as { exitCode: number; stdout: string; stderr: string };
  assert.equal(j.exitCode, 3);
  assert.equal(j.stderr, 'err\n');
  assert.match(j.stdout, /^ran true\n/);
  assert.equal(lastBody('/v1/instances/web1/exec').encoding, 'utf8');
});

test('exec on an instance without the agent: the coded error, exit 1', async () => {
  const r = await runCli(['exec', 'db1', '--', 'true'], fake.env);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: AGENT_UNAVAILABLE: instance "db1" has no guest agent channel \(it was created with --no-agent/);
  const usage = await runCli(['exec', 'web1'], fake.env);
  assert.equal(usage.code, 1);
  assert.match(usage.stderr, /missing required argument 'command'/);
});

test('show lists the guest\'s OS and addresses (IPv4 first, no loopback) when the agent answers, and says when it does not', async () => {
  const r = await runCli(['show', 'web2'], fake.env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^agent:\s+answering$/m);
  assert.match(r.stdout, /^guest os:\s+Corral tiny 1, kernel 6\.1\.0-57-amd64 \(x86_64\)$/m);
  assert.match(r.stdout, /^guest ips:\s+10\.0\.2\.15\/24 \(eth0\), fec0::5054:ff:fe12:3456\/64 \(eth0\)$/m);
  const silent = await runCli(['show', 'web1'], fake.env);
  assert.match(silent.stdout, /^agent:\s+not answering/m);
  assert.doesNotMatch(silent.stdout, /guest ips/);
  const none = await runCli(['show', 'db2'], fake.env);
  assert.match(none.stdout, /^agent:\s+none \(created with --no-agent\)$/m);
});

test('stop says when the guest went down through its agent; create --no-agent sends agent: false', async () => {
  const r = await runCli(['stop', 'web1', '--timeout', '7'], fake.env);
  assert.equal(r.stdout, 'web1: stopped (through the guest agent: the guest ignored the ACPI power button)\n');
  const c = await runCli(['create', 'web9', '--image', 'tiny', '--no-agent'], fake.env);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(lastBody('/v1/instances'), { name: 'web9', image: 'tiny', agent: false });
});
