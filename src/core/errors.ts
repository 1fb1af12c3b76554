/** Coded errors: every failure a user can see has a stable code, a message and an HTTP status. */

export const ErrorCodes = {
  INSTANCE_NOT_FOUND: 404,
  IMAGE_NOT_FOUND: 404,
  VOLUME_NOT_FOUND: 404,
  /** an instance (or a volume) has no snapshot of that name */
  SNAPSHOT_NOT_FOUND: 404,
  NETWORK_NOT_FOUND: 404,
  NIC_NOT_FOUND: 404,
  /** no API token of that name */
  TOKEN_NOT_FOUND: 404,
  /** the cluster has no host of that name (it never joined, or it was removed) */
  HOST_NOT_FOUND: 404,
  NOT_FOUND: 404,
  INVALID_SPEC: 400,
  INVALID_IMAGE: 400,
  /**
   * an instance archive (corral import) that is not whole or not as its manifest says: truncated, a byte changed (a
   * sha256 that does not match), a member out of place, a manifest of another format; nothing is created
   */
  INVALID_ARCHIVE: 400,
  /** an upload (an image's file) larger than the daemon takes (CORRAL_UPLOAD_MAX): refused before a byte is written */
  TOO_LARGE: 413,
  INVALID_STATE: 409,
  ALREADY_EXISTS: 409,
  /** a host of that name (or uuid) is already in the cluster */
  HOST_EXISTS: 409,
  INSUFFICIENT_RESOURCES: 409,
  CONSOLE_BUSY: 409,
  /**
   * the graphical console of an instance without a display (created with --display none, the default): the message
   * says how to give it one (`corral set NAME display=vnc`, from the next start)
   */
  NO_DISPLAY: 409,
  IMAGE_IN_USE: 409,
  VOLUME_IN_USE: 409,
  NETWORK_IN_USE: 409,
  NETWORK_CONFLICT: 409,
  PCI_DEVICE_NOT_FOUND: 404,
  /** an instance has no such passthrough device */
  HOSTDEV_NOT_FOUND: 404,
  IOMMU_GROUP_NOT_VIABLE: 409,
  DEVICE_IN_USE: 409,
  SRIOV_UNSUPPORTED: 400,
  /** the host lacks what a device needs (/dev/vhost-net, a vhost-user back end's socket) */
  DEVICE_UNAVAILABLE: 400,
  /** the operation is not possible with this instance's accelerator or this QEMU (vCPU unplug under TCG) */
  UNSUPPORTED: 409,
  UNAUTHORIZED: 401,
  /** the caller's token is valid but its role is below the one the request needs (the message names both) */
  FORBIDDEN: 403,
  /**
   * a request authenticated by a browser session's cookie that may have been forged by another site: it comes from
   * another origin, or changes something without the session's CSRF header (x-corral-csrf)
   */
  CSRF_REFUSED: 403,
  /** a stream already has as many clients as it takes (the events stream's cap) */
  TOO_MANY_CLIENTS: 429,
  /** a cluster join token that is not one (bad prefix, part count, id, secret or CA hash); the message never holds the secret */
  INVALID_JOIN_TOKEN: 400,
  /** a certificate signing request that does not parse, whose self-signature does not verify or whose key is too weak */
  INVALID_CSR: 400,
  /** a cluster peer's certificate is not from this cluster's CA, not valid now, or not of the expected role */
  UNTRUSTED_PEER: 403,
  /** a join token that is well formed but refused: unknown, expired, used already, or for another cluster */
  JOIN_TOKEN_REFUSED: 401,
  /** `corral cluster init` on a database that already holds a cluster */
  CLUSTER_EXISTS: 409,
  /** a controller started on a database where `corral cluster init` never ran */
  CLUSTER_NOT_INITIALISED: 409,
  /** `corral agent` without --join on a host that never joined a cluster */
  NOT_JOINED: 409,
  /** a host (its agent, a controller it must reach) does not answer, or may take nothing now (maintenance, fenced) */
  HOST_UNAVAILABLE: 503,
  /** no host of the cluster can take an instance: the message says what each one lacks */
  NO_HOST_FITS: 409,
  /**
   * an instance that cannot be live-migrated (yet): a disk off the shared pool, a passthrough or SR-IOV device, a
   * vhost-user device, not running, a migration already under way, or a destination that cannot run its CPU (another
   * accelerator, a model its QEMU cannot run, another host CPU under `host`); the message names the disk, device or CPU
   */
  NOT_MIGRATABLE: 409,
  /**
   * a live migration did not complete (QEMU's failure, a cancel, its timeout): the instance runs where it was; after
   * a switch to postcopy (outcome postcopy-failed) or an unknown switch-over (outcome unknown) the source stays
   * paused and the message says where each copy is
   */
  MIGRATION_FAILED: 500,
  /**
   * `corral host evacuate` moved what it could and left instances on the host (each with its own code: the
   * evacuation's result lists them); the host stays in maintenance, and running it again tries them again
   */
  EVACUATION_INCOMPLETE: 409,
  /**
   * a --postcopy migration the destination cannot receive: its QEMU may not use userfaultfd (unprivileged, with
   * vm.unprivileged_userfaultfd 0); refused before anything moves, the message says why and the fix
   */
  POSTCOPY_UNAVAILABLE: 409,
  /** a host that still holds instances cannot be removed */
  HOST_NOT_EMPTY: 409,
  /**
   * a controller was asked for one host's own resources (images, volumes, networks, the host, vhost-user back ends)
   * without a target host (`--target HOST`, the x-corral-target header): the message names the hosts it may be
   */
  TARGET_REQUIRED: 400,
  /** a target host was named (`--target`, x-corral-target) to a single daemon, which is no cluster's controller */
  NOT_A_CLUSTER: 400,
  /**
   * the daemon's own set-up is unusable (the TCP token file is empty, too short or unreadable; a TLS certificate
   * or key cannot be read): the daemon refuses to start and the message names the file and the fix
   */
  INVALID_CONFIG: 500,
  /**
   * the guest agent cannot be asked: the instance has no agent channel (created with --no-agent), is not running, or
   * the guest's qemu-guest-agent did not answer within the timeout (not installed, not started, hung); the message says which
   */
  AGENT_UNAVAILABLE: 409,
  /** the guest's agent answered a command with an error (a program it could not run, a command it blocks): its class and description */
  AGENT_FAILED: 502,
  /**
   * an instance snapshot whose disks changed behind Corral's back (a disk lacks it, holds another snapshot of that
   * name, or was attached or detached since): refused, nothing restored; the message lists what differs
   */
  SNAPSHOT_MISMATCH: 409,
  /** the VM's process or its monitor went away while an operation talked to it */
  VM_GONE: 409,
  QEMU_FAILED: 500,
  /**
   * a program Corral runs is not installed on the host (the message names it and its Debian package). 500,
   * not 424: the request was fine and no other request failed; the host's installation is what is wrong
   */
  MISSING_TOOL: 500,
  /** a host command failed (the message names it and carries its stderr's telling line) */
  COMMAND_FAILED: 500,
  NETWORK_FAILED: 500,
  /**
   * the data dir's filesystem is full (ENOSPC, a quota, SQLite's "database or disk is full") while an operation
   * wrote: it failed, and the daemon goes on. 500 like MISSING_TOOL: the request was fine, the host is short
   */
  NO_SPACE: 500,
  /** a stored record (an instance's spec) is corrupt or from another version of Corral */
  CORRUPT_RECORD: 500,
  TIMEOUT: 504,
  /** the cluster's PostgreSQL cannot be reached, refuses the connection or went away (the message never holds a password) */
  DATABASE_UNAVAILABLE: 503,
  /**
   * the cluster database's schema is newer than this controller knows (a newer controller migrated it): this one
   * refuses to start; the message names both versions and says to upgrade it
   */
  SCHEMA_TOO_NEW: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class CorralError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'CorralError';
    this.code = code;
    this.status = ErrorCodes[code];
    this.details = details;
  }

  toJSON(): { error: Record<string, unknown> } {
    return { error: { code: this.code, message: this.message, ...this.details } };
  }
}

export function invalidSpec(field: string, message: string): CorralError {
  return new CorralError('INVALID_SPEC', `${field}: ${message}`, { field });
}

export function isCorralError(e: unknown): e is CorralError {
  return e instanceof CorralError;
}

/**
 * A full filesystem, as the error a write failed with says it (ENOSPC or EDQUOT from Node, SQLITE_FULL from
 * SQLite): NO_SPACE saying what failed; null for any other error.
 */
export function noSpace(e: unknown, during: string): CorralError | null {
  const code = (e as { code?: unknown } | null)?.code;
  if (code !== 'ENOSPC' && code !== 'EDQUOT' && code !== 'SQLITE_FULL') return null;
  return new CorralError('NO_SPACE', `${during} failed: the data dir's filesystem is full (${String(code)}); free space on it (df shows how much), then try again`, { errno: code });
}
