/**
 * PII and secret detectors for free text.
 *
 * Each detector is a global regex plus an optional validator (Luhn for cards, mod-97 for
 * IBANs, octet ranges for IPs) so that a look-alike string is not masked and, more
 * important, a real value is. `findMatches` resolves overlaps so one span is masked once.
 */
import { isIP } from 'node:net';

export const DETECTOR_NAMES = ['email', 'phone', 'credit_card', 'us_ssn', 'iban', 'ip_address', 'secret'] as const;
export type DetectorName = (typeof DETECTOR_NAMES)[number];

export interface Detector {
  name: DetectorName;
  /** Finer label for secrets: aws_access_key, openai_key, github_token, … (not shown to callers). */
  kind: string;
  pattern: RegExp;
  validate?: (match: string) => boolean;
}

export interface Match {
  detector: DetectorName;
  kind: string;
  start: number;
  end: number;
  value: string;
}

/** Luhn checksum over the digits of a card-like string (ISO/IEC 7812-1 annex B). */
export function luhnValid(input: string): boolean {
  const digits = input.replace(/\D/g, '');
  if (digits.length < 13 || digits.length > 19) return false;
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

/** IBAN check digits (ISO 13616): move the first four characters to the end, letters → numbers, mod 97 = 1. */
export function ibanValid(input: string): boolean {
  const iban = input.replace(/ /g, '').toUpperCase();
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const value = code >= 65 ? String(code - 55) : ch;
    for (const digit of value) remainder = (remainder * 10 + (digit.charCodeAt(0) - 48)) % 97;
  }
  return remainder === 1;
}

function phoneValid(match: string): boolean {
  const digits = match.replace(/\D/g, '').length;
  return digits >= 9 && digits <= 15;
}

// Order matters only for overlap resolution ties: more specific detectors first.
export const DETECTORS: readonly Detector[] = [
  {
    name: 'secret',
    kind: 'private_key',
    pattern: /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----/g,
  },
  { name: 'secret', kind: 'jwt', pattern: /\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g },
  { name: 'secret', kind: 'aws_access_key', pattern: /\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b/g },
  {
    name: 'secret',
    kind: 'aws_secret_key',
    pattern: /\baws_?secret_?access_?key\b["']?\s*[:=]\s*["']?[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])/gi,
  },
  { name: 'secret', kind: 'openai_key', pattern: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/g },
  { name: 'secret', kind: 'github_token', pattern: /\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b/g },
  { name: 'secret', kind: 'slack_token', pattern: /\bxox[abposr]-[A-Za-z0-9-]{10,}/g },
  {
    name: 'secret',
    kind: 'slack_webhook',
    pattern: /https:\/\/hooks\.slack\.com\/services\/[A-Za-z0-9_/-]{20,}/g,
  },
  { name: 'email', kind: 'email', pattern: /\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b/g },
  {
    name: 'iban',
    kind: 'iban',
    pattern: /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b/g,
    validate: ibanValid,
  },
  {
    name: 'credit_card',
    kind: 'credit_card',
    pattern: /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g,
    validate: luhnValid,
  },
  {
    name: 'us_ssn',
    kind: 'us_ssn',
    pattern: /(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])/g,
  },
  {
    name: 'ip_address',
    kind: 'ipv4',
    pattern: /(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]*\d)/g,
  },
  {
    name: 'ip_address',
    kind: 'ipv6',
    pattern: /(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Fa-f:])/g,
    validate: (m) => isIP(m) === 6 && /[0-9A-Fa-f]/.test(m),
  },
  {
    name: 'phone',
    kind: 'phone',
    pattern: /(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]?\d{2,4}){2,4}(?![\w])/g,
    validate: phoneValid,
  },
];

/**
 * Begin-markers of secrets that can be longer than any sensible streaming hold-back (PEM
 * blocks). A streaming masker must not release text after such a marker until the block
 * ends or its bound is hit.
 */
export const OPEN_ENDED_MARKERS: readonly RegExp[] = [/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/g];

export function detectorsFor(names: Iterable<string> | 'all'): Detector[] {
  if (names === 'all') return [...DETECTORS];
  const wanted = new Set(names);
  return DETECTORS.filter((d) => wanted.has(d.name));
}

export function isDetectorName(name: string): name is DetectorName {
  return (DETECTOR_NAMES as readonly string[]).includes(name);
}

/**
 * All non-overlapping matches, in order. On overlap the earlier start wins, then the longer
 * span, then the detector listed first — so a card number is not also reported as a phone.
 */
export function findMatches(text: string, detectors: readonly Detector[]): Match[] {
  const all: Match[] = [];
  for (const d of detectors) {
    // Fresh regex per call: the shared ones are global and stateful (lastIndex).
    const re = new RegExp(d.pattern.source, d.pattern.flags);
    for (const m of text.matchAll(re)) {
      const value = m[0];
      if (value.length === 0) continue;
      if (d.validate && !d.validate(value)) continue;
      const start = m.index ?? 0;
      all.push({ detector: d.name, kind: d.kind, start, end: start + value.length, value });
    }
  }
  const rank = new Map(detectors.map((d, i) => [d, i]));
  const order = (m: Match) => rank.get(detectors.find((d) => d.kind === m.kind) as Detector) ?? 0;
  all.sort((a, b) => a.start - b.start || b.end - b.start - (a.end - a.start) || order(a) - order(b));
  const out: Match[] = [];
  let cursor = 0;
  for (const m of all) {
    if (m.start < cursor) continue;
    out.push(m);
    cursor = m.end;
  }
  return out;
}
