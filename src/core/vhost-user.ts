/**
 * vhost-user back ends, the pure part. A vhost-user-net NIC hands the guest's whole memory to the process on
 * the other end of a unix socket, so the socket must be one an admin chose: back ends are registered by name
 * (`corral vhost-user add NAME SOCKET`), and a NIC names a registered back end, never a path.
 */
import { CorralError, invalidSpec } from './errors.js';
import { printable, validateName } from './names.js';

export interface VhostUserBackend {
  name: string;
  /** the back end's unix socket (QEMU connects to it as a client) */
  socket: string;
  createdAt: string | null;
}

export interface VhostUserRequest {
  name?: unknown;
  socket?: unknown;
}

/** sun_path holds 108 bytes with the terminating NUL. */
export const SOCKET_PATH_MAX = 107;

/**
 * A socket path Corral may hand QEMU: absolute, in normal form (no `.`, `..` or empty components, no trailing
 * slash), without `,` or control characters (a chardev option string must not be split), short enough for a
 * unix socket, and outside Corral's own data dir (whose sockets are the daemon's, the VMs' monitors and consoles,
 * and the storage daemons' disks).
 */
export function validateSocketPath(field: string, value: unknown, dataDir: string): string {
  if (typeof value !== 'string' || value === '') throw invalidSpec(field, 'the absolute path of the back end\'s unix socket is required');
  const parts = value.split('/');
  if (!value.startsWith('/') || parts.slice(1).some((p) => p === '' || p === '.' || p === '..')) {
    throw invalidSpec(field, `"${printable(value)}" is not an absolute path in normal form (no ., .., // or trailing /)`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[,\x00-\x1f\x7f]/.test(value)) throw invalidSpec(field, `"${printable(value)}" holds a comma or a control character`);
  if (Buffer.byteLength(value) > SOCKET_PATH_MAX) throw invalidSpec(field, `the path is ${Buffer.byteLength(value)} bytes long; a unix socket's path has at most ${SOCKET_PATH_MAX}`);
  const root = dataDir.replace(/\/+$/, '');
  if (value === root || value.startsWith(`${root}/`)) throw invalidSpec(field, `${value} is inside Corral's data dir ${root}, whose sockets are Corral's own`);
  return value;
}

/** A registration request as a record. */
export function validateBackend(req: VhostUserRequest, dataDir: string, createdAt: string): VhostUserBackend {
  if (req === null || typeof req !== 'object') throw new CorralError('INVALID_SPEC', 'request body must be an object', { field: '' });
  return { name: validateName('name', req.name), socket: validateSocketPath('socket', req.socket, dataDir), createdAt };
}

/** A stored record that validation of its own fields reproduces. */
export function isBackendRecord(v: unknown, dataDir: string): v is VhostUserBackend {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  if (Object.keys(r).some((k) => !['name', 'socket', 'createdAt'].includes(k))) return false;
  if (r.createdAt !== null && typeof r.createdAt !== 'string') return false;
  try {
    const again = validateBackend({ name: r.name, socket: r.socket }, dataDir, '');
    return again.name === r.name && again.socket === r.socket;
  } catch {
    return false;
  }
}
