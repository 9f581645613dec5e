/** Test support: the same SQL text with every literal the key lexer replaces given another value of the same class. */
import { literalKey } from '../../shims/pg-proxy/src/literal-key.js';

const OTHER: Record<'i' | 'f' | 's', (old: string, n: number) => string> = {
  i: (old, n) => String((Number(old) + 7 + n) % 1000),
  f: (old, n) => (old.includes('.') || /e/i.test(old) ? `${n + 3}.25` : `${9_000_000_000 + n}`),
  s: (_old, n) => `'v${n}''x'`,
};

/** `sql` with its replaceable literals changed; unchanged when the lexer gives up on it. */
export function withOtherLiterals(sql: string, seed = 0): string {
  const k = literalKey(sql);
  if (!k) return sql;
  let out = '';
  let at = 0;
  k.literals.forEach((lit, n) => {
    const end = tokenEnd(sql, lit.start, lit.kind);
    out += sql.slice(at, lit.start) + OTHER[lit.kind](sql.slice(lit.start, end), n + seed);
    at = end;
  });
  return out + sql.slice(at);
}

function tokenEnd(sql: string, start: number, kind: 'i' | 'f' | 's'): number {
  if (kind === 's') {
    let j = start + 1;
    while (j < sql.length) {
      if (sql[j] === "'") {
        if (sql[j + 1] === "'") j += 2;
        else return j + 1;
      } else j++;
    }
    return j;
  }
  return start + (/^(\d*\.?\d*(?:[eE][-+]?\d+)?)/.exec(sql.slice(start))?.[1]?.length ?? 1);
}
