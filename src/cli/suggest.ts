/**
 * "Did you mean": on INSTANCE_NOT_FOUND (and the volume, network and image ones) the CLI lists what exists and
 * names the nearest, as commander does for mistyped commands.
 */
import { CliError, type ApiClient } from './client.js';

/** Damerau-Levenshtein distance (optimal string alignment): insertions, deletions, substitutions, swaps. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The name nearest to `wanted`: within 3 edits and more alike than not (commander's rule), the fewest edits
 * first; else the only name `wanted` is a prefix of. Undefined when nothing is near enough or it is a tie.
 */
export function nearestName(wanted: string, names: readonly string[]): string | undefined {
  let best: string[] = [];
  let bestDistance = Infinity;
  for (const name of names) {
    if (name === wanted) continue;
    const distance = editDistance(wanted, name);
    const similarity = 1 - distance / Math.max(wanted.length, name.length);
    if (distance > 3 || similarity <= 0.4) continue;
    if (distance < bestDistance) {
      best = [name];
      bestDistance = distance;
    } else if (distance === bestDistance) best.push(name);
  }
  if (best.length === 1) return best[0];
  if (best.length > 1) return undefined;
  const prefixed = names.filter((n) => wanted.length > 0 && n !== wanted && n.startsWith(wanted));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** Which list to search for each not-found code: the API path and the key of its array. */
const LISTS: Record<string, { path: string; key: string }> = {
  INSTANCE_NOT_FOUND: { path: '/v1/instances', key: 'instances' },
  VOLUME_NOT_FOUND: { path: '/v1/volumes', key: 'volumes' },
  NETWORK_NOT_FOUND: { path: '/v1/networks', key: 'networks' },
  IMAGE_NOT_FOUND: { path: '/v1/images', key: 'images' },
};

/**
 * The error with `(did you mean "web1"?)` added to its message (and `didYouMean` to its details) when it is a
 * not-found error for a name and something near that name exists. Any failure to ask leaves the error as it was.
 */
export async function withSuggestion(e: CliError, client: ApiClient): Promise<CliError> {
  const list = e.code ? LISTS[e.code] : undefined;
  const wanted = e.details.name;
  if (!list || typeof wanted !== 'string') return e;
  try {
    const res = await client.call<Record<string, Array<{ name?: unknown }> | undefined>>('GET', list.path);
    const names = (res?.[list.key] ?? []).map((x) => x.name).filter((n): n is string => typeof n === 'string');
    const near = nearestName(wanted, names);
    if (!near) return e;
    return new CliError(`${e.message} (did you mean "${near}"?)`, e.code, { ...e.details, didYouMean: near });
  } catch {
    return e;
  }
}
