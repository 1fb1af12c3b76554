/**
 * Terminal queries in guest output. A guest's shell asks the terminal questions (busybox's line editing sends
 * ESC[6n, "where is the cursor?", at each prompt); a terminal answers them, but piped into a file or another
 * program they are noise. The console command drops them when its stdout is not a terminal.
 */

/**
 * CSI sequences that only ask: device status reports (ESC[5n, ESC[6n, ESC[?6n) and device attributes
 * (ESC[c, ESC[0c, ESC[>c, ESC[=c). Both finals are queries whatever their parameters.
 */
// eslint-disable-next-line no-control-regex
const QUERY = /\x1b\[[?>=]?[0-9;]{0,16}[nc]/g;
/** The start of one, cut at the end of a chunk: held back until the next chunk says what it is. */
// eslint-disable-next-line no-control-regex
const PARTIAL = /\x1b(\[[?>=]?[0-9;]{0,16})?$/;

/** Drops terminal queries from a byte stream, also when one is split across chunks. Other bytes pass unchanged. */
export class TerminalQueryFilter {
  private held = '';

  /** The chunk without queries (latin1 keeps every byte as it is, so binary output survives). */
  push(chunk: Buffer): Buffer {
    let s = (this.held + chunk.toString('latin1')).replace(QUERY, '');
    this.held = '';
    const m = PARTIAL.exec(s);
    if (m) {
      this.held = m[0];
      s = s.slice(0, m.index);
    }
    return Buffer.from(s, 'latin1');
  }

  /** What is held back at the end of the stream. */
  flush(): Buffer {
    const rest = Buffer.from(this.held, 'latin1');
    this.held = '';
    return rest;
  }
}

/** A whole buffer without terminal queries. */
export function stripTerminalQueries(buf: Buffer): Buffer {
  const f = new TerminalQueryFilter();
  return Buffer.concat([f.push(buf), f.flush()]);
}
