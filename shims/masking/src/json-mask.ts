/**
 * Masking of parsed JSON: target rules (paths / field names) replace whole values, detector
 * rules rewrite strings (and numbers that are really card numbers or phone numbers).
 */
import { findMatches } from './detectors.js';
import { applyMatches, maskText, maskValue, type CompiledMask, type MaskMethod, type PathStep, type TargetRule } from './mask-rules.js';

/** Bound on nesting so a hostile document cannot exhaust the stack; deeper values are redacted. */
export const MAX_JSON_DEPTH = 64;

interface Pending {
  rule: TargetRule;
  /** Index of the next path step still to match. */
  step: number;
}

function maskWhole(value: unknown, rule: TargetRule, hashKey: Buffer, textMask: CompiledMask): unknown {
  if (rule.detectors) {
    // Detector-scoped target: only matches inside the target are masked.
    const scoped = { ...textMask, detectors: rule.detectors, methodByDetector: new Map(rule.detectors.map((d) => [d.name, rule.method] as const)) };
    return maskJsonValue(value, { ...scoped, targets: [] }, 0, []);
  }
  return maskScalarOrTree(value, rule.method, hashKey);
}

function maskScalarOrTree(value: unknown, method: MaskMethod, hashKey: Buffer): unknown {
  if (method === 'null' || value === null) return null;
  if (typeof value === 'object') return method === 'hash' ? maskValue(JSON.stringify(value), 'hash', 'value', hashKey) : '[REDACTED]';
  const text = String(value);
  return method === 'redact' ? '[REDACTED]' : maskValue(text, method, 'value', hashKey);
}

/** Advance pending path matches across one object key / array index. */
function advance(pending: readonly Pending[], key: string | number): { next: Pending[]; hit: TargetRule | undefined } {
  const next: Pending[] = [];
  let hit: TargetRule | undefined;
  const lower = typeof key === 'string' ? key.toLowerCase() : undefined;
  for (const p of pending) {
    const step = p.rule.path[p.step] as PathStep;
    let matched = false;
    if ('recursive' in step) {
      // `..name`: stays pending at every depth, and matches here when the key is `name`.
      next.push(p);
      matched = lower !== undefined && lower === step.recursive;
    } else if ('wildcard' in step) matched = true;
    else if ('key' in step) matched = lower === step.key;
    else matched = key === step.index;
    if (!matched) continue;
    if (p.step + 1 === p.rule.path.length) hit ??= p.rule;
    else next.push({ rule: p.rule, step: p.step + 1 });
  }
  return { next, hit };
}

function maskJsonValue(value: unknown, mask: CompiledMask, depth: number, pending: readonly Pending[]): unknown {
  if (depth > MAX_JSON_DEPTH) return '[REDACTED]';
  if (typeof value === 'string') return maskText(value, mask);
  if (typeof value === 'number') {
    if (mask.detectors.length === 0 || !Number.isFinite(value)) return value;
    const text = String(value);
    const matches = findMatches(text, mask.detectors);
    return matches.length ? applyMatches(text, matches, (m) => mask.methodByDetector.get(m.detector) ?? 'redact', mask.hashKey) : value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    return value.map((item, i) => {
      const { next, hit } = advance(pending, i);
      return hit ? maskWhole(item, hit, mask.hashKey, mask) : maskJsonValue(item, mask, depth + 1, next);
    });
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const { next, hit } = advance(pending, k);
    const masked = hit ? maskWhole(v, hit, mask.hashKey, mask) : maskJsonValue(v, mask, depth + 1, next);
    // defineProperty: a key named __proto__ stays a plain data key.
    Object.defineProperty(out, k, { value: masked, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Mask a parsed JSON document; the input is not modified. */
export function maskJson(value: unknown, mask: CompiledMask): unknown {
  if (mask.empty) return value;
  return maskJsonValue(value, mask, 0, mask.targets.map((rule) => ({ rule, step: 0 })));
}
