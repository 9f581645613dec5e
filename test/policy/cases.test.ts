/**
 * Decision cases as data: every policies/cases/*.yaml|json case is evaluated against the
 * BUILT bundle (.scopegate/build/bundle.tar.gz, made by `npm run policy:build`) in the
 * same WASM runtime the PDP uses, one test per case.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, test } from 'node:test';
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { parse as parseYaml } from 'yaml';
import { BUNDLED_POLICY_DIR } from '../../pdp-server/src/config.js';
import { EFFECTS, type PolicyResult } from '../../pdp-server/src/contract.js';
import { BUILT_BUNDLE_FILE, DECISION_ENTRYPOINT } from '../../pdp-server/src/policy/opa-cli.js';
import { evaluateOne, loadBundle } from './policy-bundle.js';

interface Case {
  name: string;
  input: unknown;
  expected: {
    effect: string;
    reasons_include?: string[];
    reasons_exclude?: string[];
    mask_targets?: string[];
    mask_detectors?: string[];
    mask_request_detectors?: string[];
    approval?: { mode: string; window_s?: number };
    ttl_ms?: number;
  };
}

const CASES_DIR = path.join(BUNDLED_POLICY_DIR, 'cases');

function loadCases(): Array<Case & { file: string }> {
  const out: Array<Case & { file: string }> = [];
  for (const file of readdirSync(CASES_DIR).sort()) {
    if (!/\.(ya?ml|json)$/.test(file)) continue;
    const text = readFileSync(path.join(CASES_DIR, file), 'utf8');
    const doc: unknown = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    // A file holds one case or a list of them.
    for (const c of Array.isArray(doc) ? doc : [doc]) {
      const k = c as Partial<Case>;
      assert.ok(typeof k.name === 'string' && k.input !== undefined && k.expected, `${file}: malformed case ${JSON.stringify(c).slice(0, 80)}`);
      assert.ok((EFFECTS as readonly string[]).includes(k.expected.effect), `${file}: ${k.name}: bad expected.effect`);
      out.push({ ...(k as Case), file });
    }
  }
  return out;
}

const cases = loadCases();

describe('policy decision cases (built WASM bundle)', () => {
  let policy: LoadedPolicy;
  before(async () => {
    policy = await loadBundle(BUILT_BUNDLE_FILE);
  });

  test('there are enough cases and names are unique', () => {
    assert.ok(cases.length >= 40, `only ${cases.length} cases`);
    assert.equal(new Set(cases.map((c) => c.name)).size, cases.length);
  });

  for (const c of cases) {
    test(`${c.file}: ${c.name}`, () => {
      const d = evaluateOne(policy, c.input, DECISION_ENTRYPOINT) as PolicyResult;
      const got = JSON.stringify(d);
      assert.equal(d.effect, c.expected.effect, got);
      assert.ok(Array.isArray(d.reasons) && d.reasons.length > 0, `every decision gives a reason: ${got}`);
      for (const r of c.expected.reasons_include ?? []) assert.ok(d.reasons.includes(r), `missing reason ${r}: ${got}`);
      for (const r of c.expected.reasons_exclude ?? []) assert.ok(!d.reasons.includes(r), `unexpected reason ${r}: ${got}`);
      const mask = d.obligations?.mask ?? [];
      if (c.expected.mask_targets) {
        assert.deepEqual(mask.flatMap((m) => (m.target ? [m.target] : [])).sort(), [...c.expected.mask_targets].sort(), got);
      }
      if (c.expected.mask_detectors) {
        assert.deepEqual(mask.flatMap((m) => (m.detector ? [m.detector] : [])).sort(), [...c.expected.mask_detectors].sort(), got);
      }
      if (c.expected.mask_request_detectors) {
        const mr = d.obligations?.mask_request ?? [];
        assert.deepEqual(mr.flatMap((m) => (m.detector ? [m.detector] : [])).sort(), [...c.expected.mask_request_detectors].sort(), got);
      }
      if (c.expected.approval) assert.deepEqual(d.obligations?.approval, c.expected.approval, got);
      if (d.effect !== 'approval_required') assert.equal(d.obligations?.approval, undefined, got);
      if (d.effect === 'deny') assert.deepEqual(d.obligations, {}, `a denial carries no obligations: ${got}`);
      if (c.expected.ttl_ms !== undefined) assert.equal(d.ttl_ms, c.expected.ttl_ms, got);
      assert.ok(Number.isInteger(d.ttl_ms), got);
    });
  }
});
