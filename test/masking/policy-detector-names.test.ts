/**
 * The default policy names detectors in `mask` / `mask_request` obligations; the masking
 * library must know every one of them, or it falls back to masking with every detector.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { compileMask, DETECTOR_NAMES, findMatches, DETECTORS } from '../../shims/masking/src/index.js';

const config = JSON.parse(readFileSync(new URL('../../policies/data.json', import.meta.url), 'utf8')).scopegate_config;

test('every detector the default policy names is a masking-library detector', () => {
  const named = new Set<string>([
    ...Object.keys(config.llm.detectors),
    ...Object.keys(config.llm.external_defaults),
    ...Object.values(config.llm.resources as Record<string, { sensitive?: Record<string, string> }>).flatMap((r) => Object.keys(r.sensitive ?? {})),
    ...Object.values(config.http.resources as Record<string, { mask?: Array<{ detector?: string }> }>).flatMap((r) => (r.mask ?? []).flatMap((m) => (m.detector ? [m.detector] : []))),
  ]);
  for (const name of named) assert.ok((DETECTOR_NAMES as readonly string[]).includes(name), `${name} is not one of ${DETECTOR_NAMES.join(', ')}`);
});

test('a mask_request for each policy detector compiles to exactly that detector family', () => {
  for (const name of Object.keys(config.llm.detectors)) {
    const mask = compileMask([{ detector: name, method: 'redact' }]);
    assert.deepEqual([...new Set(mask.detectors.map((d) => d.name))], [name], name);
  }
});

test('what the policy calls a secret, the library masks as one', () => {
  const secret = new RegExp(config.llm.detectors.secret);
  for (const text of ['AKIAABCDEFGHIJKLMNOP', 'sk-proj-abcdefghijklmnop1234', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789AB', 'xoxb-1234567890-abcdefghij']) {
    assert.ok(secret.test(text), `policy pattern finds ${text}`);
    assert.deepEqual(findMatches(text, DETECTORS).map((m) => m.detector), ['secret'], `library finds ${text}`);
  }
});
