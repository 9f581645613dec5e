/**
 * Test support: load a built bundle (`.tar.gz` from `opa build -t wasm`) the way the PDP
 * does — policy.wasm into @open-policy-agent/opa-wasm, data.json through setData.
 */
import { readFile } from 'node:fs/promises';
import { loadPolicy, type LoadedPolicy } from '@open-policy-agent/opa-wasm';
import { readBundleFiles } from '../../pdp-server/src/policy/opa-cli.js';

export async function loadBundle(file: string): Promise<LoadedPolicy> {
  const files = await readBundleFiles(await readFile(file));
  const wasm = files.get('/policy.wasm');
  if (!wasm) throw new Error(`${file} has no /policy.wasm`);
  const policy = await loadPolicy(wasm);
  const data = files.get('/data.json');
  policy.setData(data ? (JSON.parse(data.toString('utf8')) as object) : {});
  return policy;
}

/** Evaluates one entrypoint and returns its single result (the result set has one row). */
export function evaluateOne(policy: LoadedPolicy, input: unknown, entrypoint: string): unknown {
  const rs = policy.evaluate(input, entrypoint) as Array<{ result: unknown }>;
  if (!Array.isArray(rs) || rs.length !== 1) throw new Error(`expected one result, got ${JSON.stringify(rs)}`);
  return rs[0]?.result;
}
