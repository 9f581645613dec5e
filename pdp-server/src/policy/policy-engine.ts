/**
 * The policy engine: holds the loaded WASM policy, evaluates inputs against it and swaps
 * in new bundles atomically. An evaluation always runs against one bundle from start to
 * finish, and its answer carries that bundle's revision.
 */
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { EFFECTS, type Effect, type PolicyResult } from '../contract.js';
import { ScopegateError } from '../errors.js';
import { readBundle, type PolicyBundle } from './bundle.js';
import { DECISION_ENTRYPOINT } from './opa-cli.js';

export { DECISION_ENTRYPOINT };

export interface ActivePolicy {
  readonly revision: string;
  readonly source: string;
  readonly loadedAt: Date;
  readonly entrypoints: readonly string[];
  readonly policy: LoadedPolicy;
}

/** WASM memory: 64 KiB pages. The ceiling bounds what one evaluation of a huge input can take. */
const MEMORY = { initial: 16, maximum: 2048 } as const;

export type PolicyListener = (active: ActivePolicy) => void;

export class PolicyEngine {
  #active: ActivePolicy | undefined;
  readonly #listeners: PolicyListener[] = [];

  get active(): ActivePolicy | undefined {
    return this.#active;
  }

  onSwap(fn: PolicyListener): void {
    this.#listeners.push(fn);
  }

  /** Load a bundle (tar.gz bytes) and make it the active policy. The old one keeps serving until then. */
  async loadBundle(tarGz: Buffer, source: string): Promise<ActivePolicy> {
    return this.load(await readBundle(tarGz), source);
  }

  async load(bundle: PolicyBundle, source: string): Promise<ActivePolicy> {
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm, { ...MEMORY });
      policy.setData(bundle.data);
    } catch (err) {
      throw new ScopegateError('bundle_invalid', `policy.wasm does not load: ${(err as Error).message}`);
    }
    const entrypoints = Object.keys((policy.entrypoints ?? {}) as Record<string, number>);
    if (!entrypoints.includes(DECISION_ENTRYPOINT)) {
      throw new ScopegateError('bundle_invalid', `the bundle has no ${DECISION_ENTRYPOINT} entrypoint`);
    }
    const active: ActivePolicy = { revision: bundle.revision, source, loadedAt: new Date(), entrypoints, policy };
    this.#active = active; // the swap: one assignment, so an evaluation sees the old or the new bundle, never a mix
    for (const fn of this.#listeners) fn(active);
    return active;
  }

  /**
   * Evaluate an entrypoint; returns the raw value of the first result (undefined when the
   * rule is undefined). Throws ScopegateError on anything else.
   */
  evaluateRaw(input: unknown, entrypoint: string, active = this.#active): { value: unknown; revision: string } {
    if (!active) throw new ScopegateError('policy_not_loaded');
    if (!active.entrypoints.includes(entrypoint)) throw new ScopegateError('not_found', `no policy entrypoint ${entrypoint}`);
    let rs: unknown;
    try {
      rs = active.policy.evaluate(input, entrypoint);
    } catch (err) {
      throw new ScopegateError('policy_evaluation_failed', undefined, { cause: err });
    }
    const first = Array.isArray(rs) ? (rs[0] as { result?: unknown } | undefined) : undefined;
    return { value: first?.result, revision: active.revision };
  }

  /** Evaluate the decision entrypoint and check the answer has the decision shape. */
  decide(input: unknown): { result: PolicyResult; revision: string } {
    const { value, revision } = this.evaluateRaw(input, DECISION_ENTRYPOINT);
    if (value === undefined) throw new ScopegateError('policy_undefined');
    return { result: checkPolicyResult(value), revision };
  }
}

/** A policy's answer is trusted only if it has exactly the expected shape; anything else denies. */
export function checkPolicyResult(value: unknown): PolicyResult {
  if (!value || typeof value !== 'object') throw new ScopegateError('policy_invalid_result');
  const v = value as Record<string, unknown>;
  if (typeof v.effect !== 'string' || !(EFFECTS as readonly string[]).includes(v.effect)) {
    throw new ScopegateError('policy_invalid_result', 'the policy answered without a valid effect');
  }
  const reasons = Array.isArray(v.reasons) ? v.reasons.filter((r): r is string => typeof r === 'string') : [];
  const ttl = typeof v.ttl_ms === 'number' && Number.isFinite(v.ttl_ms) && v.ttl_ms > 0 ? Math.floor(v.ttl_ms) : 0;
  const obligations = v.obligations && typeof v.obligations === 'object' && !Array.isArray(v.obligations) ? v.obligations : {};
  return { effect: v.effect as Effect, reasons, obligations: obligations as PolicyResult['obligations'] & object, ttl_ms: ttl };
}
