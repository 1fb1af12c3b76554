/**
 * What the guest agent's answers mean to Corral: the guest's OS and addresses (guest-get-osinfo,
 * guest-network-get-interfaces), the outcome of a command run with guest-exec (guest-exec-status), and the exec
 * request's checks. Pure: the answers come in as the agent gave them (parsed JSON), read defensively since a guest
 * says what it likes.
 */
import { CorralError, invalidSpec } from './errors.js';
import { EXEC_MAX_STDIN, EXEC_MAX_TIMEOUT_S } from './exec-limits.js';

export interface GuestOs {
  /** os-release ID, NAME, PRETTY_NAME, VERSION, VERSION_ID; uname's release and machine */
  id?: string;
  name?: string;
  prettyName?: string;
  version?: string;
  versionId?: string;
  kernelRelease?: string;
  machine?: string;
}

export interface GuestAddress {
  family: 'ipv4' | 'ipv6';
  address: string;
  prefix: number;
}

export interface GuestInterface {
  name: string;
  mac?: string;
  addresses: GuestAddress[];
}

/** What `show` adds from the agent of a running guest. */
export interface GuestInfo {
  os: GuestOs;
  interfaces: GuestInterface[];
}

const str = (v: unknown, max = 256): string | undefined => (typeof v === 'string' && v.length > 0 ? v.slice(0, max) : undefined);

/** guest-get-osinfo's answer, the fields Corral shows. */
export function parseOsInfo(raw: unknown): GuestOs {
  const r = (raw !== null && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  const os: GuestOs = {};
  const pick: Array<[keyof GuestOs, string]> = [
    ['id', 'id'], ['name', 'name'], ['prettyName', 'pretty-name'], ['version', 'version'], ['versionId', 'version-id'],
    ['kernelRelease', 'kernel-release'], ['machine', 'machine'],
  ];
  for (const [to, from] of pick) {
    const v = str(r[from]);
    if (v !== undefined) os[to] = v;
  }
  return os;
}

/**
 * guest-network-get-interfaces's answer, read defensively (a guest says what it likes): its first 64 entries that are
 * objects with a name, each with its fields as the agent gave them. parseInterfaces and parseGuestNicCounters
 * (guest-nic-counters.ts) read them.
 */
export function interfaceEntries(raw: unknown): Array<{ name: string; r: Record<string, unknown> }> {
  if (!Array.isArray(raw)) return [];
  const out: Array<{ name: string; r: Record<string, unknown> }> = [];
  for (const i of raw.slice(0, 64)) {
    if (i === null || typeof i !== 'object') continue;
    const r = i as Record<string, unknown>;
    const name = str(r.name, 64);
    if (name !== undefined) out.push({ name, r });
  }
  return out;
}

/** guest-network-get-interfaces's answer: each interface with its MAC and addresses (at most 64 of each). */
export function parseInterfaces(raw: unknown): GuestInterface[] {
  const out: GuestInterface[] = [];
  for (const { name, r } of interfaceEntries(raw)) {
    const addresses: GuestAddress[] = [];
    for (const a of Array.isArray(r['ip-addresses']) ? (r['ip-addresses'] as unknown[]).slice(0, 64) : []) {
      if (a === null || typeof a !== 'object') continue;
      const x = a as Record<string, unknown>;
      const family = x['ip-address-type'];
      const address = str(x['ip-address'], 64);
      const prefix = x.prefix;
      if ((family !== 'ipv4' && family !== 'ipv6') || address === undefined || typeof prefix !== 'number' || !Number.isInteger(prefix)) continue;
      addresses.push({ family, address, prefix });
    }
    const mac = str(r['hardware-address'], 64);
    out.push({ name, ...(mac !== undefined ? { mac } : {}), addresses });
  }
  return out;
}

/** The addresses a user looks for: every interface but loopback, IPv4 first. */
export function guestAddresses(ifaces: GuestInterface[]): Array<GuestAddress & { interface: string }> {
  const all = ifaces.filter((i) => i.name !== 'lo').flatMap((i) => i.addresses.map((a) => ({ ...a, interface: i.name })));
  return [...all.filter((a) => a.family === 'ipv4'), ...all.filter((a) => a.family === 'ipv6')];
}

/** How a command run in the guest ended. */
export interface ExecResult {
  /** the exit code; for a command a signal ended, 128 + the signal's number (as a shell says it) */
  exitCode: number;
  /** the signal that ended it, or null */
  signal: number | null;
  stdout: Buffer;
  stderr: Buffer;
  /** the agent kept only the first 16 MiB of a stream */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
}

/** guest-exec-status's answer: null while the command runs; its outcome, base64 streams decoded, once it exited. */
export function parseExecStatus(raw: unknown): ExecResult | null {
  const r = (raw !== null && typeof raw === 'object' ? raw : {}) as Record<string, unknown>;
  if (r.exited !== true) return null;
  const signal = typeof r.signal === 'number' && Number.isInteger(r.signal) ? r.signal : null;
  const code = typeof r.exitcode === 'number' && Number.isInteger(r.exitcode) ? r.exitcode : null;
  const data = (v: unknown): Buffer => (typeof v === 'string' ? Buffer.from(v, 'base64') : Buffer.alloc(0));
  return {
    exitCode: code ?? (signal !== null ? 128 + signal : 255),
    signal,
    stdout: data(r['out-data']),
    stderr: data(r['err-data']),
    stdoutTruncated: r['out-truncated'] === true,
    stderrTruncated: r['err-truncated'] === true,
  };
}

export { EXEC_DEFAULT_TIMEOUT_S, EXEC_MAX_STDIN, EXEC_MAX_TIMEOUT_S } from './exec-limits.js';

/** An exec request's command and stdin, checked: a program and its arguments, stdin as bytes. */
export function checkExec(command: unknown, stdin: Buffer | null, timeoutS: number): void {
  if (!Array.isArray(command) || command.length === 0) throw invalidSpec('command', 'give the program to run and its arguments: a non-empty list');
  if (command.some((a) => typeof a !== 'string')) throw invalidSpec('command', 'every argument is a string');
  if ((command[0] as string).length === 0) throw invalidSpec('command', 'the program is an empty string');
  if (command.some((a: string) => a.includes('\0'))) throw invalidSpec('command', 'an argument holds a NUL byte');
  if (stdin !== null && stdin.length > EXEC_MAX_STDIN) throw invalidSpec('stdin', `at most ${EXEC_MAX_STDIN / 1024} KiB, got ${stdin.length} bytes`);
  if (!Number.isInteger(timeoutS) || timeoutS < 1 || timeoutS > EXEC_MAX_TIMEOUT_S) throw invalidSpec('timeout', `seconds, 1 to ${EXEC_MAX_TIMEOUT_S}, got ${timeoutS}`);
}

/** Decode a request's base64 (stdin), refusing what is not base64. */
export function decodeBase64(field: string, text: string): Buffer {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw invalidSpec(field, 'is not base64');
  return Buffer.from(text, 'base64');
}

/** The polling interval for guest-exec-status: quick at first (most commands are short), then calmer. */
export function execPollDelay(attempt: number): number {
  return Math.min(500, 20 * 2 ** Math.min(attempt, 5));
}

/** Why the agent cannot be asked, when it is because of the instance (not the guest). */
export function agentUnavailable(name: string, why: 'no-channel' | 'not-running', state?: string): CorralError {
  return why === 'no-channel'
    ? new CorralError('AGENT_UNAVAILABLE', `instance "${name}" has no guest agent channel (it was created with --no-agent; corral set ${name} agent=yes adds it from the next start)`, { reason: why, name })
    : new CorralError('AGENT_UNAVAILABLE', `instance "${name}" is ${state ?? 'not running'}: the guest agent answers only while it runs`, { reason: why, name, ...(state ? { state } : {}) });
}
