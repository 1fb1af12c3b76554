/**
 * cloud-init's NoCloud seed: what a create request asks for (SSH keys, hostname, user-data, network-config), its
 * validation, and the texts of the seed's files. Pure: the seed disk itself is written by src/services/cloud-init.ts.
 *
 * The seed is derived from the spec at every start (and on a migration's destination), so it is never state:
 * - meta-data: `instance-id` (the instance's uuid: the same across restarts and migrations, new for a copy, which
 *   gets a new uuid, so cloud-init runs its per-instance modules again there), `local-hostname`, and
 *   `public-keys` (the SSH keys: cloud-init authorizes them for the image's default user, whatever user-data says);
 * - user-data: the user's, byte for byte; without one, a #cloud-config Corral writes (hostname,
 *   ssh_authorized_keys);
 * - network-config: the user's (version 1 or 2), only when given; without it cloud-init's fallback (DHCP on the
 *   first NIC).
 */
import { Buffer } from 'node:buffer';
import { invalidSpec } from './errors.js';
import { printable } from './names.js';
import type { CloudInitSpec } from './spec-schema.js';

export type { CloudInitSpec };

/** The most the seed's files may hold together (meta-data + user-data + network-config), in bytes. */
export const SEED_MAX_BYTES = 256 * 1024;

/** The SSH key types OpenSSH's authorized_keys takes (ssh-dss is not: OpenSSH turned DSA off). */
export const SSH_KEY_TYPES = [
  'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
] as const;

/** The first line of each user-data format cloud-init takes that Corral accepts (MIME multipart: a header line). */
export const USER_DATA_FORMATS = ['#cloud-config', '#!', '#cloud-boothook', '#include', '## template: jinja', 'Content-Type: multipart/'] as const;

/** What a create request may carry for cloud-init (the API's fields). */
export interface CloudInitRequest {
  sshKeys?: string[];
  userData?: string;
  networkConfig?: string;
  hostname?: string;
}

/**
 * The cloud-init part of a spec from a create request, or undefined when it asks for none (no seed disk then).
 * INVALID_SPEC naming the field for a bad key, hostname, user-data or network-config, or a seed over SEED_MAX_BYTES.
 */
export function validateCloudInit(name: string, req: CloudInitRequest): CloudInitSpec | undefined {
  const asked = req.sshKeys !== undefined || req.userData !== undefined || req.networkConfig !== undefined || req.hostname !== undefined;
  if (!asked) return undefined;
  const sshKeys = (req.sshKeys ?? []).map((k, i) => parsePublicKey(k, `sshKeys[${i}]`));
  const hostname = req.hostname === undefined ? name : validateHostname(req.hostname);
  const userData = req.userData === undefined ? null : checkUserData(req.userData);
  const networkConfig = req.networkConfig === undefined ? null : checkNetworkConfig(req.networkConfig);
  const spec: CloudInitSpec = { hostname, sshKeys, userData, networkConfig };
  const files = seedFiles('00000000-0000-0000-0000-000000000000', spec);
  const total = Object.values(files).reduce((n, t) => n + Buffer.byteLength(t), 0);
  if (total > SEED_MAX_BYTES) {
    const field = req.userData !== undefined ? 'userData' : req.networkConfig !== undefined ? 'networkConfig' : 'sshKeys';
    throw invalidSpec(field, `the cloud-init seed would hold ${total} bytes (meta-data, user-data and network-config together): at most ${SEED_MAX_BYTES} (${SEED_MAX_BYTES / 1024} KiB)`);
  }
  return spec;
}

/**
 * One OpenSSH public key line, `TYPE BASE64 [COMMENT]`, checked: a known type, a base64 blob whose own type string
 * (the blob starts with it, length-prefixed) is that type. Returned normalised (single spaces, no line break).
 */
export function parsePublicKey(text: unknown, field: string): string {
  if (typeof text !== 'string') throw invalidSpec(field, 'an SSH public key is a string');
  const line = text.trim();
  if (/^-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(line)) throw invalidSpec(field, 'this is a private key: give the public one (the .pub file)');
  if (/[\r\n]/.test(line)) throw invalidSpec(field, 'one key per entry: the text has more than one line');
  const [type = '', blob = '', ...comment] = line.split(/[ \t]+/);
  if (!(SSH_KEY_TYPES as readonly string[]).includes(type)) {
    throw invalidSpec(field, `not an OpenSSH public key ("TYPE BASE64 [COMMENT]" with TYPE one of ${SSH_KEY_TYPES.join(', ')}): it starts with "${printable(type.slice(0, 40))}"`);
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) throw invalidSpec(field, `the ${type} key's data is not base64`);
  const raw = Buffer.from(blob, 'base64');
  const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  const inner = len >= 0 && len <= raw.length - 4 ? raw.subarray(4, 4 + len).toString('latin1') : null;
  if (inner !== type) throw invalidSpec(field, `the key's data says it is ${inner === null ? 'nothing readable' : `"${printable(inner.slice(0, 40))}"`}, its line says ${type}: not a valid OpenSSH public key`);
  if (raw.length <= 4 + len) throw invalidSpec(field, `the ${type} key's data holds its type but no key`);
  return [type, blob, ...comment].join(' ');
}

/** A hostname: dot-separated labels of a-z, A-Z, 0-9 and - (not first or last), each 1..63, 253 in all. */
export function validateHostname(h: unknown): string {
  if (typeof h !== 'string' || h.length === 0) throw invalidSpec('hostname', 'must be a non-empty string');
  if (h.length > 253) throw invalidSpec('hostname', `at most 253 characters, got ${h.length}`);
  for (const label of h.split('.')) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label)) {
      throw invalidSpec('hostname', `"${printable(h)}" is not a hostname: dot-separated labels of letters, digits and - (not at a label's start or end), 1 to 63 characters each`);
    }
  }
  return h;
}

/**
 * User-data in a format cloud-init runs (USER_DATA_FORMATS, by its first line). A #cloud-config must be a YAML
 * mapping: no tab in its indentation (YAML forbids them) and its first line of content a `key:`, a `{` or `---`.
 */
export function checkUserData(text: unknown): string {
  if (typeof text !== 'string') throw invalidSpec('userData', 'must be a string (the file\'s text)');
  const first = text.split('\n', 1)[0]?.replace(/\r$/, '') ?? '';
  const format = USER_DATA_FORMATS.find((f) => first.startsWith(f));
  if (format === undefined) {
    throw invalidSpec('userData', `cloud-init would not run it: its first line must be #cloud-config, a script's #! line, #cloud-boothook, #include, "## template: jinja" or a MIME multipart header; it is "${printable(first.slice(0, 60))}"`);
  }
  if (format === '#cloud-config') {
    if (first.trim() !== '#cloud-config') throw invalidSpec('userData', `the first line must be exactly #cloud-config, got "${printable(first.slice(0, 60))}"`);
    checkYamlMapping(text, 'userData', 'a #cloud-config');
  }
  return text;
}

/** network-config: a YAML mapping of cloud-init's network config version 1 or 2 (`version: 1|2`, top level or under `network:`). */
export function checkNetworkConfig(text: unknown): string {
  if (typeof text !== 'string') throw invalidSpec('networkConfig', 'must be a string (the file\'s text)');
  checkYamlMapping(text, 'networkConfig', 'a network-config');
  if (!/^(network:\s*\n(\s+#.*\n|\s*\n)*\s+)?version:\s*["']?[12]["']?\s*(#.*)?$/m.test(text)) {
    throw invalidSpec('networkConfig', 'a network-config says `version: 1` or `version: 2` (at the top, or under `network:`): cloud-init\'s network config formats');
  }
  return text;
}

/** The light check of a YAML mapping that needs no parser: no tabs in indentation, the first content line a mapping's. */
function checkYamlMapping(text: string, field: string, what: string): void {
  const lines = text.split('\n');
  const tab = lines.findIndex((l) => /^ *\t/.test(l));
  if (tab >= 0) throw invalidSpec(field, `${what} is YAML, which forbids tabs in indentation (line ${tab + 1})`);
  const content = lines.find((l) => !/^\s*(#.*)?\r?$/.test(l));
  if (content !== undefined && !/^(---\s*$|\{|[A-Za-z0-9_"'][^:]*:(\s|$))/.test(content)) {
    throw invalidSpec(field, `${what} is a YAML mapping of keys (such as \`packages:\` or \`runcmd:\`); its first line of content is "${printable(content.slice(0, 60))}"`);
  }
}

/** A double-quoted YAML scalar: JSON's string syntax is one (cloud-init reads YAML 1.1 with PyYAML). */
const q = (s: string): string => JSON.stringify(s);

/** The seed's files, by name: meta-data, user-data, and network-config when the spec has one. */
export function seedFiles(instanceId: string, ci: CloudInitSpec): Record<string, string> {
  const keys = ci.sshKeys.map((k) => `  - ${q(k)}\n`).join('');
  const metaData = `instance-id: ${q(instanceId)}\nlocal-hostname: ${q(ci.hostname)}\n${keys ? `public-keys:\n${keys}` : ''}`;
  const userData = ci.userData ?? `#cloud-config\n# written by Corral: the instance's hostname and SSH keys (for the image's default user)\nhostname: ${q(ci.hostname)}\n${keys ? `ssh_authorized_keys:\n${keys}` : ''}`;
  const files: Record<string, string> = { 'meta-data': metaData, 'user-data': userData };
  if (ci.networkConfig !== null) files['network-config'] = ci.networkConfig;
  return files;
}
