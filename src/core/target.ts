/**
 * The target host of a request (`corral --target HOST`, env CORRAL_TARGET): the header the CLI sends it in, and
 * its parsing. A cluster controller sends a request that names one to that host's agent; a single daemon, which is
 * no cluster, refuses it (NOT_A_CLUSTER) rather than answer for itself what was asked of another host.
 */
import { validateName } from './names.js';

export const TARGET_HEADER = 'x-corral-target';

/**
 * The host a request's headers name, or undefined for none. A name that is not a host name (hosts join under a DNS
 * label), an empty one, or several (a repeated header arrives joined by ", ") are INVALID_SPEC on field "target".
 */
export function targetOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  const raw = headers[TARGET_HEADER];
  if (raw === undefined) return undefined;
  const text = Array.isArray(raw) ? raw.join(', ') : raw;
  return validateName('target', text.trim() === '' ? '' : text);
}
