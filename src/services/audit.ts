/**
 * The audit log: $CORRAL_DATA_DIR/audit.log, one JSON line per state-changing request (and per refused one on
 * TCP). The file is 0600, opened O_APPEND (never through a symlink) and kept open; past `maxBytes` it becomes
 * audit.log.1 (one kept) and a new one starts. A write that fails (ENOSPC, EIO, ...) never fails the request nor
 * stops the daemon: it is said once on stderr, and again only after a write has succeeded in between.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import type { Role } from '../core/tokens.js';

/** One line of the audit log. */
export interface AuditEntry {
  /** when the request came in (ISO) */
  time: string;
  /** a token's name, "token-file", "unix-socket", or null when no valid token was shown */
  who: string | null;
  role: Role | null;
  via: 'unix' | 'tcp';
  /** the client's address (TCP) */
  peer: string | null;
  method: string;
  /** the URL path, without the query string */
  path: string;
  /** the instance, volume, network, image or token the request names, when it names one */
  resource: string | null;
  status: number;
  /** the error's code when it failed */
  code: string | null;
  ms: number;
}

/**
 * Where the API's hooks write (src/api/audit.ts) and what /v1/audit reads: the daemon's file (AuditLog), or a
 * cluster's table (src/cluster/cluster-audit.ts). `record` never throws; a promise it returns is awaited.
 */
export interface AuditSink {
  record(entry: AuditEntry): void | Promise<void>;
  /** the last `limit` entries, oldest first */
  recent(limit: number): AuditEntry[] | Promise<AuditEntry[]>;
}

/** The file operations the log uses, replaceable in tests (a disk that fills up). */
export interface AuditFs {
  openSync: typeof openSync;
  writeSync: (fd: number, data: Buffer) => number;
  fstatSync: typeof fstatSync;
  fchmodSync: typeof fchmodSync;
  closeSync: typeof closeSync;
  renameSync: typeof renameSync;
}

export const AUDIT_MAX_BYTES = 10 * 1024 * 1024;

const realFs: AuditFs = { openSync, writeSync: (fd, data) => writeSync(fd, data), fstatSync, fchmodSync, closeSync, renameSync };

export interface AuditOptions {
  maxBytes?: number;
  /** where a failure to write is said (default: stderr) */
  warn?: (message: string) => void;
  fs?: Partial<AuditFs>;
}

export class AuditLog implements AuditSink {
  private fd: number | null = null;
  private size = 0;
  private failing = false;
  private readonly maxBytes: number;
  private readonly warn: (message: string) => void;
  private readonly fs: AuditFs;

  constructor(readonly file: string, opts: AuditOptions = {}) {
    this.maxBytes = opts.maxBytes ?? AUDIT_MAX_BYTES;
    this.warn = opts.warn ?? ((m) => { process.stderr.write(`${m}\n`); });
    this.fs = { ...realFs, ...opts.fs };
  }

  private open(): number {
    const fd = this.fs.openSync(this.file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      const st = this.fs.fstatSync(fd);
      // a file made before (or by hand) with a looser mode is tightened; anything but a regular file is left as it is
      if (st.isFile() && (st.mode & 0o777) !== 0o600) this.fs.fchmodSync(fd, 0o600);
      this.size = st.size;
    } catch (e) {
      this.fs.closeSync(fd);
      throw e;
    }
    return fd;
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      this.fs.closeSync(this.fd);
    } catch {
      // nothing to do about a descriptor that will not close
    }
    this.fd = null;
  }

  /** Past the bound: audit.log becomes audit.log.1 (replacing the one before) and a new audit.log starts. */
  private rotate(): void {
    this.closeFd();
    this.fs.renameSync(this.file, `${this.file}.1`);
    this.fd = this.open();
  }

  /** Append one entry. Never throws. */
  record(entry: AuditEntry): void {
    const line = Buffer.from(`${JSON.stringify(entry)}\n`);
    try {
      this.fd ??= this.open();
      if (this.size > 0 && this.size + line.length > this.maxBytes) this.rotate();
      let done = 0;
      while (done < line.length) done += this.fs.writeSync(this.fd!, line.subarray(done));
      this.size += line.length;
      if (this.failing) this.warn(`corral: the audit log ${this.file} is written again`);
      this.failing = false;
    } catch (e) {
      this.closeFd(); // opened afresh next time: the file may have been fixed, replaced or moved meanwhile
      if (!this.failing) {
        const err = e as NodeJS.ErrnoException;
        this.warn(`corral: cannot write the audit log ${this.file} (${err.code ?? 'error'}: ${err.message}); requests go on, unaudited until it can be written again`);
      }
      this.failing = true;
    }
  }

  /** The last `limit` entries, oldest first (from audit.log.1 too when audit.log has fewer); unreadable lines are left out. */
  recent(limit: number): AuditEntry[] {
    const lines = tailLines(this.file, limit);
    if (lines.length < limit) lines.unshift(...tailLines(`${this.file}.1`, limit - lines.length));
    const out: AuditEntry[] = [];
    for (const l of lines) {
      try {
        out.push(JSON.parse(l) as AuditEntry);
      } catch {
        // a line cut short (a full disk): skipped
      }
    }
    return out;
  }

  close(): void {
    this.closeFd();
  }
}

/** The last `n` non-empty lines of a file, read backwards from its end in chunks; none if it cannot be read. */
export function tailLines(file: string, n: number): string[] {
  if (n <= 0) return [];
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return [];
  }
  try {
    let pos = fstatSync(fd).size;
    const chunks: Buffer[] = [];
    let newlines = 0;
    // one line more than asked: the first one read may be cut at the chunk's start
    while (pos > 0 && newlines <= n) {
      const len = Math.min(64 * 1024, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      readSync(fd, chunk, 0, len, pos);
      chunks.unshift(chunk);
      for (const b of chunk) if (b === 0x0a) newlines++;
    }
    const lines = Buffer.concat(chunks).toString('utf8').split('\n');
    if (pos > 0) lines.shift(); // cut at the chunk's start
    return lines.filter((l) => l.length > 0).slice(-n);
  } finally {
    closeSync(fd);
  }
}
