/**
 * Incremental masking of text that arrives in pieces (LLM token deltas).
 *
 * A secret may be split across pieces, so the tail of what has arrived is held back until
 * it can no longer be part of a match: the tail that could still grow into one (see
 * `possibleMatchTail`, at most `holdChars` characters), extended back to the start of any
 * match that touches it, or of an open PEM block. Text that cannot be part of any match is
 * released at once, so a model's first words reach the agent without waiting for
 * `holdChars` characters to pile up. The hold is bounded by `maxHoldChars`; past it,
 * everything held is released masked and any open block or tail match is redacted whole —
 * failing towards masking too much, never leaking.
 */
import { findMatches, OPEN_ENDED_MARKERS, type Match } from './detectors.js';
import { applyMatches, maskValue, type CompiledMask } from './mask-rules.js';

export interface StreamingTextMaskerOptions {
  /** Characters always held back; longer than the longest ordinary secret (164-char OpenAI keys). */
  holdChars?: number;
  /** Upper bound on held characters. */
  maxHoldChars?: number;
}

const END_MARKER = /-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----/;

/**
 * The characters each detector's matches are made of (by detector kind; see detectors.ts).
 * A match is a contiguous run of such characters, so a match still in progress at the end
 * of the text lies inside the longest run of them that ends there: holding that run back
 * (per active detector) is enough, whatever comes next. PEM blocks contain anything; their
 * BEGIN marker is what is listed here, an opened block is held by `openBlockStart`.
 */
const MATCH_ALPHABETS: Readonly<Record<string, string>> = {
  private_key: '-A-Z0-9 ',
  jwt: 'A-Za-z0-9_.-',
  aws_access_key: 'A-Z0-9',
  openai_key: 'A-Za-z0-9_-',
  github_token: 'A-Za-z0-9_',
  slack_token: 'A-Za-z0-9-',
  slack_webhook: 'A-Za-z0-9_/:.-',
  email: 'A-Za-z0-9._%+@-',
  iban: 'A-Z0-9 ',
  credit_card: '0-9 -',
  us_ssn: '0-9-',
  ipv4: '0-9.',
  ipv6: '0-9A-Fa-f:',
  phone: '0-9+(). -',
};
function asciiTable(re: RegExp): Uint8Array {
  const table = new Uint8Array(128);
  for (let c = 0; c < 128; c++) table[c] = re.test(String.fromCharCode(c)) ? 1 : 0;
  return table;
}

/** ASCII membership tables built from MATCH_ALPHABETS. */
const ALPHABET_TABLES = new Map(Object.entries(MATCH_ALPHABETS).map(([kind, cls]) => [kind, asciiTable(new RegExp(`[${cls}]`))] as const));

/**
 * The AWS secret-key detector allows letters and spaces (`aws_secret_access_key = …`), so
 * every sentence is a run of its characters; a match of it must however start with `aws`
 * (or be `a`/`aw` cut off at the end), so the earliest such start is what must be held.
 */
const AWS_SECRET_TAIL = /\baws[A-Za-z0-9_"'\s:=/+]*$|\baw?$/i;
const AWS_SECRET_ALPHABET = asciiTable(/[A-Za-z0-9_"'\s:=/+]/);

const END_MARKER_MAX = 64;
/**
 * Released characters kept as left context of the held text, cut at the last character no
 * active detector can match (so the context starts where the whole text could not have a
 * match in progress either). Bounded; a context cut inside a run can only add matches.
 */
const CONTEXT_CHARS = 256;

export const DEFAULT_HOLD_CHARS = 256;
export const DEFAULT_MAX_HOLD_CHARS = 16 * 1024;

export class StreamingTextMasker {
  private pending = '';
  /** The last released characters (as received), the left context of `pending`. */
  private before = '';
  /** Inside a PEM block that outgrew the hold: its text is dropped until the END marker. */
  private inBlock = false;
  private readonly holdChars: number;
  private readonly maxHoldChars: number;
  /** ASCII characters no active detector can match (undefined: a detector with unknown characters is active). */
  private readonly separators: Uint8Array | undefined;

  constructor(
    private readonly mask: Pick<CompiledMask, 'detectors' | 'methodByDetector' | 'hashKey'>,
    opts: StreamingTextMaskerOptions = {},
  ) {
    this.holdChars = opts.holdChars ?? DEFAULT_HOLD_CHARS;
    this.maxHoldChars = Math.max(opts.maxHoldChars ?? DEFAULT_MAX_HOLD_CHARS, this.holdChars * 2);
    const union = new Uint8Array(128);
    let known = true;
    for (const d of mask.detectors) {
      const table = d.kind === 'aws_secret_key' ? AWS_SECRET_ALPHABET : ALPHABET_TABLES.get(d.kind);
      if (!table) known = false;
      else for (let c = 0; c < 128; c++) union[c] = (union[c] ?? 0) | (table[c] ?? 0);
    }
    this.separators = known ? union.map((v) => (v ? 0 : 1)) : undefined;
  }

  /** Number of characters currently held back. */
  get held(): number {
    return this.pending.length;
  }

  /** Add text; returns the masked text that is now safe to release (possibly ''). */
  push(text: string): string {
    if (this.mask.detectors.length === 0) return text;
    this.pending += text;
    if (this.inBlock && !this.skipBlock()) return '';
    const matches = this.pendingMatches();
    let cut = this.pending.length - this.possibleMatchTail();
    for (const m of matches) if (m.end > cut) cut = Math.min(cut, m.start);
    const open = this.openBlockStart(matches);
    if (open !== undefined) cut = Math.min(cut, open);
    if (cut <= 0) {
      if (this.pending.length <= this.maxHoldChars) return '';
      this.inBlock = open !== undefined;
      return this.release(this.pending.length, matches, open ?? this.tailMatchStart(matches));
    }
    // Never split a surrogate pair between what is released and what is held.
    const code = this.pending.charCodeAt(cut - 1);
    if (code >= 0xd800 && code <= 0xdbff) cut -= 1;
    return this.release(cut, matches, undefined);
  }

  /** End of input: release everything, masked. An unterminated PEM block is redacted to the end. */
  flush(): string {
    if (this.inBlock && !this.skipBlock()) {
      this.pending = '';
      return '';
    }
    if (this.pending.length === 0) return '';
    const matches = this.pendingMatches();
    return this.release(this.pending.length, matches, this.openBlockStart(matches));
  }

  private release(cut: number, matches: readonly Match[], redactFrom: number | undefined): string {
    const head = this.pending.slice(0, redactFrom ?? cut);
    const inHead = matches.filter((m) => m.end <= head.length);
    let out = applyMatches(head, inHead, (m) => this.mask.methodByDetector.get(m.detector) ?? 'redact', this.mask.hashKey);
    if (redactFrom !== undefined && redactFrom < cut) out += maskValue(this.pending.slice(redactFrom, cut), 'redact', 'secret', this.mask.hashKey);
    this.remember(this.pending.slice(0, cut));
    this.pending = this.pending.slice(cut);
    return out;
  }

  /**
   * While inside an oversized PEM block: drop text up to and including its END marker.
   * Returns true when the block ended (the rest is ordinary text again).
   */
  private skipBlock(): boolean {
    const end = END_MARKER.exec(this.pending);
    if (end) {
      this.pending = this.pending.slice(end.index + end[0].length);
      this.before = '';
      this.inBlock = false;
      return true;
    }
    // Keep just enough to recognise an END marker split across pieces.
    this.pending = this.pending.slice(-END_MARKER_MAX);
    return false;
  }

  /** Start of a PEM "BEGIN … PRIVATE KEY" marker not closed by a complete private-key match. */
  private openBlockStart(matches: readonly Match[]): number | undefined {
    if (!this.mask.detectors.some((d) => d.kind === 'private_key')) return undefined;
    for (const marker of OPEN_ENDED_MARKERS) {
      for (const m of this.pending.matchAll(new RegExp(marker.source, marker.flags))) {
        const start = m.index ?? 0;
        if (!matches.some((x) => x.kind === 'private_key' && x.start <= start && x.end > start)) return start;
      }
    }
    // A partial marker at the very end ("-----BEG") is covered by the ordinary hold.
    return undefined;
  }

  /** Length of the tail that could still be (part of) a match once more text comes, at most `holdChars`. */
  private possibleMatchTail(): number {
    const text = this.pending;
    const limit = Math.min(this.holdChars, text.length);
    let hold = 0;
    for (const d of this.mask.detectors) {
      let n: number;
      if (d.kind === 'aws_secret_key') {
        const from = text.length - limit;
        const m = AWS_SECRET_TAIL.exec(from > 0 ? text.slice(from) : text);
        n = m ? limit - m.index : 0;
      } else {
        const table = ALPHABET_TABLES.get(d.kind);
        // A detector without a known alphabet keeps the full hold.
        if (!table) return limit;
        n = 0;
        for (let i = text.length - 1; i >= 0 && n < limit; i--, n++) {
          const c = text.charCodeAt(i);
          if (c >= 128 || table[c] === 0) break;
        }
      }
      if (n > hold) hold = n;
      if (hold >= limit) return limit;
    }
    return hold;
  }

  /** Keep the end of released text as left context, starting at its last separator. */
  private remember(released: string): void {
    let ctx = this.before + released;
    if (ctx.length > CONTEXT_CHARS) ctx = ctx.slice(-CONTEXT_CHARS);
    if (this.separators) {
      for (let i = ctx.length - 1; i >= 0; i--) {
        const c = ctx.charCodeAt(i);
        if (c < 128 && this.separators[c] === 1) {
          ctx = ctx.slice(i);
          break;
        }
      }
    }
    this.before = ctx;
  }

  /**
   * Matches in the held text, found with the last released characters in front of it: the
   * detectors' look-behinds and word boundaries see the same neighbours as they would in
   * the whole text. A match reaching back into released text (only possible after a bound
   * forced a release) is clipped to the held part, which is still masked.
   */
  private pendingMatches(): Match[] {
    const offset = this.before.length;
    if (offset === 0) return findMatches(this.pending, this.mask.detectors);
    const out: Match[] = [];
    for (const m of findMatches(this.before + this.pending, this.mask.detectors)) {
      if (m.end <= offset) continue;
      const start = Math.max(0, m.start - offset);
      const end = m.end - offset;
      out.push(m.start >= offset ? { ...m, start, end } : { ...m, start, end, value: this.pending.slice(0, end) });
    }
    return out;
  }

  private tailMatchStart(matches: readonly Match[]): number | undefined {
    const last = matches[matches.length - 1];
    return last && last.end >= this.pending.length - this.holdChars ? last.start : undefined;
  }
}
