/**
 * Names and user text in messages, shared by every spec module (spec, disks, NICs, networks) so that none of
 * them imports another for it.
 */
import { invalidSpec } from './errors.js';

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** An instance or image name: a DNS label (RFC 1123): a-z, 0-9 and '-', 1..63 characters. */
export function validateName(field: string, name: unknown): string {
  if (typeof name !== 'string' || name.length === 0) throw invalidSpec(field, 'a name is required');
  if (name.length > 63) throw invalidSpec(field, `name is ${name.length} characters long; at most 63 are allowed`);
  if (!NAME_RE.test(name)) {
    throw invalidSpec(field, `"${printable(name)}" is not a DNS label: use lower-case letters, digits and '-', starting and ending with a letter or digit`);
  }
  return name;
}

/** Render user text safely inside an error message (newlines and control characters escaped). */
export function printable(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}
