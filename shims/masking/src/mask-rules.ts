/**
 * Mask obligations (from a PDP decision) compiled once into what the maskers need:
 * detector rules for free text, and target rules for JSON paths / field names.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { detectorsFor, findMatches, isDetectorName, type Detector, type DetectorName, type Match } from './detectors.js';

export const MASK_METHODS = ['redact', 'last4', 'hash', 'null'] as const;
export type MaskMethod = (typeof MASK_METHODS)[number];

/** The shape of a mask obligation in the decision contract (structurally MaskRule). */
export interface MaskRuleInput {
  target?: string;
  detector?: string;
  method: string;
}

export interface TargetRule {
  /** Parsed JSON path steps, or a bare field name matched at any depth. */
  path: PathStep[];
  method: MaskMethod;
  /** When set, only these detectors' matches inside the target are masked. */
  detectors: Detector[] | undefined;
}

export type PathStep = { key: string } | { index: number } | { wildcard: true } | { recursive: string };

export interface CompiledMask {
  /** Detector → method for text anywhere. Empty when no detector rule applies everywhere. */
  detectors: Detector[];
  methodByDetector: Map<DetectorName, MaskMethod>;
  targets: TargetRule[];
  hashKey: Buffer;
  /** True when nothing needs to be masked. */
  empty: boolean;
}

export class MaskRuleError extends Error {}

function parseMethod(method: string): MaskMethod {
  if ((MASK_METHODS as readonly string[]).includes(method)) return method as MaskMethod;
  // An unknown method must not silently leave data unmasked: treat it as the strictest.
  return 'redact';
}

/**
 * `$.a.b[0].c`, `$.items[*].email`, `$..email`, or a bare field name (`email`) which is
 * matched at any depth. Field names are compared case-insensitively so `Email` is caught too.
 */
export function parseTarget(target: string): PathStep[] {
  if (!target.startsWith('$')) return [{ recursive: target.toLowerCase() }];
  const steps: PathStep[] = [];
  let i = 1;
  const name = () => {
    const m = /^[^.[\]]+/.exec(target.slice(i));
    if (!m) throw new MaskRuleError(`bad mask target ${JSON.stringify(target)}`);
    i += m[0].length;
    return m[0];
  };
  while (i < target.length) {
    if (target.startsWith('..', i)) {
      i += 2;
      steps.push({ recursive: name().toLowerCase() });
    } else if (target[i] === '.') {
      i += 1;
      const n = name();
      steps.push(n === '*' ? { wildcard: true } : { key: n.toLowerCase() });
    } else if (target[i] === '[') {
      const close = target.indexOf(']', i);
      if (close < 0) throw new MaskRuleError(`bad mask target ${JSON.stringify(target)}`);
      const inner = target.slice(i + 1, close).trim();
      i = close + 1;
      if (inner === '*') steps.push({ wildcard: true });
      else if (/^\d+$/.test(inner)) steps.push({ index: Number(inner) });
      else if (/^(['"]).*\1$/.test(inner)) steps.push({ key: inner.slice(1, -1).toLowerCase() });
      else throw new MaskRuleError(`bad mask target ${JSON.stringify(target)}`);
    } else {
      throw new MaskRuleError(`bad mask target ${JSON.stringify(target)}`);
    }
  }
  return steps;
}

const processHashKey = randomBytes(32);

/**
 * Compile obligations. Targets that look like SQL columns (`schema.table.column`) are for
 * the pg-proxy and are matched here by their last segment as a field name, which masks more
 * rather than less. An unknown detector name means "every detector" for the same reason.
 */
export function compileMask(rules: readonly MaskRuleInput[] | undefined, opts: { hashKey?: Buffer } = {}): CompiledMask {
  const methodByDetector = new Map<DetectorName, MaskMethod>();
  const targets: TargetRule[] = [];
  for (const rule of rules ?? []) {
    const method = parseMethod(rule.method);
    const dets = rule.detector === undefined ? undefined : isDetectorName(rule.detector) ? detectorsFor([rule.detector]) : detectorsFor('all');
    if (rule.target !== undefined && rule.target !== '') {
      let target = rule.target;
      if (!target.startsWith('$') && target.includes('.')) target = target.slice(target.lastIndexOf('.') + 1);
      targets.push({ path: parseTarget(target), method, detectors: dets });
    } else if (dets) {
      for (const d of dets) if (!methodByDetector.has(d.name)) methodByDetector.set(d.name, method);
    }
  }
  const detectors = detectorsFor(methodByDetector.keys());
  return {
    detectors,
    methodByDetector,
    targets,
    hashKey: opts.hashKey ?? processHashKey,
    empty: detectors.length === 0 && targets.length === 0,
  };
}

/** Replacement text for one matched value. Hashes are keyed so low-entropy PII cannot be brute-forced back. */
export function maskValue(value: string, method: MaskMethod, label: string, hashKey: Buffer): string {
  switch (method) {
    case 'null':
      return '';
    case 'hash':
      return `[HASH:${createHmac('sha256', hashKey).update(value).digest('hex').slice(0, 16)}]`;
    case 'last4': {
      const alnum = value.replace(/[^A-Za-z0-9]/g, '');
      return alnum.length > 8 ? `****${alnum.slice(-4)}` : '****';
    }
    case 'redact':
      return `[REDACTED:${label}]`;
  }
}

/** Mask every detector match in `text`. Returns the same string when nothing matched. */
export function maskText(text: string, mask: Pick<CompiledMask, 'detectors' | 'methodByDetector' | 'hashKey'>): string {
  if (mask.detectors.length === 0 || text.length === 0) return text;
  return applyMatches(text, findMatches(text, mask.detectors), (m) => mask.methodByDetector.get(m.detector) ?? 'redact', mask.hashKey);
}

export function applyMatches(text: string, matches: readonly Match[], methodOf: (m: Match) => MaskMethod, hashKey: Buffer): string {
  if (matches.length === 0) return text;
  let out = '';
  let cursor = 0;
  for (const m of matches) {
    out += text.slice(cursor, m.start) + maskValue(m.value, methodOf(m), m.detector, hashKey);
    cursor = m.end;
  }
  return out + text.slice(cursor);
}
