/**
 * Incremental masking of text that arrives in pieces (LLM token deltas).
 *
 * A secret may be split across pieces, so the tail of what has arrived is held back until
 * it can no longer be the beginning of a match: the last `holdChars` characters, extended
 * back to the start of any match that touches them, or of an open PEM block. The hold is
 * bounded by `maxHoldChars`; past it, everything held is released masked and any open block
 * or tail match is redacted whole — failing towards masking too much, never leaking.
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
const END_MARKER_MAX = 64;

export const DEFAULT_HOLD_CHARS = 256;
export const DEFAULT_MAX_HOLD_CHARS = 16 * 1024;

export class StreamingTextMasker {
  private pending = '';
  /** Inside a PEM block that outgrew the hold: its text is dropped until the END marker. */
  private inBlock = false;
  private readonly holdChars: number;
  private readonly maxHoldChars: number;

  constructor(
    private readonly mask: Pick<CompiledMask, 'detectors' | 'methodByDetector' | 'hashKey'>,
    opts: StreamingTextMaskerOptions = {},
  ) {
    this.holdChars = opts.holdChars ?? DEFAULT_HOLD_CHARS;
    this.maxHoldChars = Math.max(opts.maxHoldChars ?? DEFAULT_MAX_HOLD_CHARS, this.holdChars * 2);
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
    const matches = findMatches(this.pending, this.mask.detectors);
    let cut = this.pending.length - this.holdChars;
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
    const matches = findMatches(this.pending, this.mask.detectors);
    return this.release(this.pending.length, matches, this.openBlockStart(matches));
  }

  private release(cut: number, matches: readonly Match[], redactFrom: number | undefined): string {
    const head = this.pending.slice(0, redactFrom ?? cut);
    const inHead = matches.filter((m) => m.end <= head.length);
    let out = applyMatches(head, inHead, (m) => this.mask.methodByDetector.get(m.detector) ?? 'redact', this.mask.hashKey);
    if (redactFrom !== undefined && redactFrom < cut) out += maskValue(this.pending.slice(redactFrom, cut), 'redact', 'secret', this.mask.hashKey);
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

  private tailMatchStart(matches: readonly Match[]): number | undefined {
    const last = matches[matches.length - 1];
    return last && last.end >= this.pending.length - this.holdChars ? last.start : undefined;
  }
}
