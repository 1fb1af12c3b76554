/**
 * The commands of a README's ```sh blocks: continuation lines joined, `#` comments split off, `;` separating
 * commands, shell words split (single and double quotes). `corral ...` commands are kept with their args;
 * anything else (make, alias) and sections about real hardware are marked skipped with the reason.
 */

export interface ReadmeCommand {
  /** 1-based line of the README where the command starts */
  line: number;
  /** the heading the block sits under */
  section: string;
  /** the command as written (without its comment) */
  text: string;
  /** the words after `corral` */
  args: string[];
  /** the comment on its line, without the `#` */
  comment: string;
  /** why it is not run, or null */
  skip: string | null;
}

/** Split off an unquoted `#` comment. */
function splitComment(line: string): [string, string] {
  let q: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (q) {
      if (ch === q) q = null;
    } else if (ch === '"' || ch === "'") q = ch;
    else if (ch === '#' && (i === 0 || /\s/.test(line[i - 1]!))) return [line.slice(0, i), line.slice(i + 1).trim()];
  }
  return [line, ''];
}

/** Shell words of one command; `;` outside quotes separates commands. */
export function shellCommands(text: string): string[][] {
  const cmds: string[][] = [];
  let words: string[] = [];
  let cur: string | null = null;
  let q: string | null = null;
  const end = (): void => {
    if (cur !== null) words.push(cur);
    cur = null;
  };
  for (const ch of text) {
    if (q) {
      if (ch === q) q = null;
      else cur = (cur ?? '') + ch;
    } else if (ch === '"' || ch === "'") {
      q = ch;
      cur = cur ?? '';
    } else if (ch === ';') {
      end();
      if (words.length) cmds.push(words);
      words = [];
    } else if (/\s/.test(ch)) end();
    else cur = (cur ?? '') + ch;
  }
  end();
  if (words.length) cmds.push(words);
  return cmds;
}

/** Sections whose commands need what one test daemon is not: real hardware, or a cluster (the cluster tests run those). */
const NOT_HERE: Array<[RegExp, string]> = [
  [/on a real host/i, 'needs real hardware'],
  [/^many hosts$|^a cluster on one machine$/i, 'needs a cluster: test/integration/cluster*.test.ts run these commands'],
];

export function readmeCommands(md: string, skipSections?: RegExp): ReadmeCommand[] {
  const out: ReadmeCommand[] = [];
  const lines = md.split('\n');
  let section = '';
  let inBlock = false;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    const fence = /^\s*```(\w*)\s*$/.exec(raw);
    if (fence) {
      inBlock = !inBlock && fence[1] === 'sh';
      continue;
    }
    if (!inBlock) {
      const h = /^#{1,6}\s+(.*)$/.exec(raw);
      if (h) section = h[1]!.trim();
      continue;
    }
    const start = i + 1;
    let [code, comment] = splitComment(raw);
    while (/\\\s*$/.test(code) && i + 1 < lines.length) {
      const [more, c2] = splitComment(lines[++i]!);
      code = `${code.replace(/\\\s*$/, ' ')}${more}`;
      comment = [comment, c2].filter(Boolean).join(' ');
    }
    for (const words of shellCommands(code)) {
      const text = words.join(' ');
      let skip: string | null = null;
      const why = skipSections ? (skipSections.test(section) ? 'needs real hardware' : undefined) : NOT_HERE.find(([re]) => re.test(section))?.[1];
      if (why) skip = `section "${section}" ${why}`;
      else if (words[0] !== 'corral') skip = `not a corral command (${words[0]})`;
      out.push({ line: start, section, text, args: words[0] === 'corral' ? words.slice(1) : words, comment, skip });
    }
  }
  return out;
}
