/**
 * The TCP API's bearer token: $CORRAL_DATA_DIR/token. The daemon never serves TCP without one: a missing file is
 * created (0600, 64 hex characters, never through a symlink); a file that exists but cannot serve as a token
 * (empty, whitespace only, too short, not a regular file, unreadable) stops the daemon with INVALID_CONFIG naming
 * the file, what is wrong with it and how to fix it.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { CorralError } from '../core/errors.js';

/** The shortest token accepted: 32 characters (the daemon makes 64 hex characters, 256 bits). */
export const MIN_TOKEN_LENGTH = 32;

function badToken(file: string, what: string, fix?: string): CorralError {
  const how = fix ?? `write a token of at least ${MIN_TOKEN_LENGTH} printable characters into it (e.g. \`openssl rand -hex 32 > ${file}\`), or remove it and the daemon makes one`;
  return new CorralError('INVALID_CONFIG', `the TCP API's token file ${file} ${what}: ${how}; the daemon does not serve TCP without a token`, { file, fix: how });
}

/** The token a file holds, or the reason it holds none. */
function readToken(file: string): string {
  let raw: string;
  try {
    const st = statSync(file); // follows a symlink: where the token really is
    if (st.isDirectory()) throw badToken(file, 'is a directory', `remove the directory (rmdir ${file}) and the daemon makes a token there, or write a token file in its place`);
    if (!st.isFile()) throw badToken(file, 'is not a regular file', `replace it with a regular file holding the token, or remove it and the daemon makes one`);
    raw = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CorralError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw badToken(file, 'is a symlink to nothing', `point it at a token file or remove it and the daemon makes one`);
    throw badToken(file, `cannot be read (${err.code ?? err.message})`, `make it readable by the daemon's user (root: chown root ${file}; chmod 600 ${file})`);
  }
  const token = raw.trim();
  if (raw.length === 0) throw badToken(file, 'is empty');
  if (token.length === 0) throw badToken(file, 'holds only whitespace');
  if (!/^[\x21-\x7e]+$/.test(token)) throw badToken(file, 'holds spaces or characters that are not printable ASCII');
  if (token.length < MIN_TOKEN_LENGTH) throw badToken(file, `holds a token of ${token.length} characters, shorter than the ${MIN_TOKEN_LENGTH} required`);
  return token;
}

/** The TCP bearer token: created (0600) when the file is not there, checked when it is. */
export function ensureToken(file: string): string {
  let exists = true;
  try {
    lstatSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') return readToken(file); // says why it cannot be read
    exists = false;
  }
  if (exists) return readToken(file);
  const token = randomBytes(32).toString('hex');
  // 'wx': O_CREAT|O_EXCL, so a file or symlink put there meanwhile is never written through
  writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
  return token;
}
