/**
 * A conservative lexer that turns SQL text into a *literal key*: the text with only the
 * contents of plain literal tokens (numbers, `'…'` strings) replaced by a class marker, and
 * every other character kept verbatim. Two texts with equal keys have the same token stream
 * except for literal values, so (once a parse has shown each replaced token is a constant,
 * see summary-cache.ts) they have the same summary.
 *
 * It understands a deliberately small subset of the Postgres lexer (scan.l) and gives up —
 * returns undefined, meaning "take the full parse path" — on anything else: comments,
 * backslashes, dollar quoting and `$` outside `$<digits>` parameters, prefixed strings
 * (E'', B'', X'', N'', U&''), non-ASCII and control characters, and numbers glued to an
 * identifier character or to a second `.` (hex/octal/binary literals, `1_000`, `1..2`).
 */

/** A replaced literal: where its token starts in the text, and its lexical class. */
export interface LiteralToken {
  start: number;
  /** `i`: integer that fits int4 (ICONST); `f`: any other number (FCONST); `s`: plain string (SCONST). */
  kind: 'i' | 'f' | 's';
}

export interface LiteralKey {
  key: string;
  literals: LiteralToken[];
}

/** Stands for a replaced literal in the key; never in accepted text (control characters bail). */
const MARK = '\u0000';
const INT4_MAX = 2147483647;

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const isIdentStart = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
/** Characters that continue an identifier in scan.l (`$` included: it makes us bail). */
const isIdentChar = (c: number): boolean => isIdentStart(c) || isDigit(c) || c === 36;
const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

/** The literal key of `sql`, or undefined when the text uses anything this lexer does not fully understand. */
export function literalKey(sql: string): LiteralKey | undefined {
  const n = sql.length;
  const literals: LiteralToken[] = [];
  let key = '';
  /** Start of the verbatim run not yet copied into `key`. */
  let copied = 0;
  let i = 0;
  // No helper closure for the replacement: this runs for every statement, and a closure
  // made per call costs an allocation (and, under tsx's keepNames, an Object.defineProperty).
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c > 126 || (c < 32 && !isSpace(c))) return undefined;
    if (c === 92) return undefined; // backslash
    if (c === 45 && sql.charCodeAt(i + 1) === 45) return undefined; // -- comment
    if (c === 47 && sql.charCodeAt(i + 1) === 42) return undefined; // /* comment
    if (isIdentStart(c)) {
      let j = i + 1;
      let d = sql.charCodeAt(j);
      while (j < n && isIdentChar(d)) {
        // `$` inside an identifier.
        if (d === 36) return undefined;
        d = sql.charCodeAt(++j);
      }
      // A quote glued to it (E'…', B'…', N'…', X'…').
      if (d === 39) return undefined;
      i = j;
      continue;
    }
    if (c === 36) {
      // Only `$<digits>` parameters; `$$`, `$tag$` dollar quoting bails.
      let j = i + 1;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      if (j === i + 1 || (j < n && isIdentChar(sql.charCodeAt(j)))) return undefined;
      i = j;
      continue;
    }
    if (c === 39) {
      // A quote right after `&` is U&'…'. (After an identifier character it was refused above.)
      if (i > 0 && sql.charCodeAt(i - 1) === 38) return undefined;
      let j = i + 1;
      for (;;) {
        if (j >= n) return undefined; // unterminated
        const d = sql.charCodeAt(j);
        if (d > 126 || (d < 32 && !isSpace(d)) || d === 92) return undefined;
        if (d === 39) {
          if (sql.charCodeAt(j + 1) === 39) {
            j += 2; // '' inside a string
            continue;
          }
          break;
        }
        j++;
      }
      key += sql.slice(copied, i) + MARK + 's';
      copied = j + 1;
      literals.push({ start: i, kind: 's' });
      i = j + 1;
      continue;
    }
    if (c === 34) {
      // Quoted identifier: kept verbatim (it is a name, not a literal); U&"…" bails.
      if (i > 0 && sql.charCodeAt(i - 1) === 38) return undefined;
      let j = i + 1;
      for (;;) {
        if (j >= n) return undefined;
        const d = sql.charCodeAt(j);
        if (d > 126 || (d < 32 && !isSpace(d)) || d === 92) return undefined;
        if (d === 34) {
          if (sql.charCodeAt(j + 1) === 34) {
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      i = j + 1;
      continue;
    }
    if (isDigit(c) || (c === 46 && isDigit(sql.charCodeAt(i + 1)))) {
      // A number starts here (identifiers consumed their own digits). `x.5`, `t..5` are not ones we know.
      const before = i > 0 ? sql.charCodeAt(i - 1) : 32;
      if (before === 46 || isIdentChar(before)) return undefined;
      let j = i;
      while (j < n && isDigit(sql.charCodeAt(j))) j++;
      let integer = true;
      if (sql.charCodeAt(j) === 46) {
        integer = false;
        j++;
        while (j < n && isDigit(sql.charCodeAt(j))) j++;
      }
      const e = sql.charCodeAt(j);
      if (e === 69 || e === 101) {
        let k = j + 1;
        const sign = sql.charCodeAt(k);
        if (sign === 43 || sign === 45) k++;
        if (!isDigit(sql.charCodeAt(k))) return undefined; // `1e`, `1e+`: glued identifier / junk
        while (k < n && isDigit(sql.charCodeAt(k))) k++;
        integer = false;
        j = k;
      }
      const after = sql.charCodeAt(j);
      if (j < n && (isIdentChar(after) || after === 46 || after === 39 || after === 34)) return undefined;
      // scan.l makes an integer that does not fit int4 an FCONST: the class is part of the key.
      // (Nine digits or fewer always fit; only longer ones are converted to check.)
      const kind = integer && (j - i <= 9 || Number(sql.slice(i, j)) <= INT4_MAX) ? 'i' : 'f';
      key += sql.slice(copied, i) + MARK + kind;
      copied = j;
      literals.push({ start: i, kind });
      i = j;
      continue;
    }
    i++;
  }
  return { key: key + sql.slice(copied), literals };
}
