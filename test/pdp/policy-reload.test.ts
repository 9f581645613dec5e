/**
 * Policy swaps: an uploaded bundle (PUT /v1/policies) and a file change in a watched folder
 * both replace the running policy atomically; every decision names the revision it used.
 * A policy that errors at run time, or calls a builtin the host lacks, denies.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BUNDLED_POLICY_DIR } from '../../pdp-server/src/config.js';
import { buildWasmBundle, findOpa, runOpa } from '../../pdp-server/src/policy/opa-cli.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const ORDERS = { kind: 'sql', name: 'orders-db' } as const;
const selectOrders = { sql: { statements: [{ command: 'select', relations: ['public.orders'], columns: [], functions: [] }] } };

/** A folder with the bundled library plus one extra module. */
async function policyFolder(extra: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-policy-'));
  await cp(BUNDLED_POLICY_DIR, dir, { recursive: true });
  for (const [name, text] of Object.entries(extra)) await writeFile(path.join(dir, name), text);
  return dir;
}

/** Build a wasm bundle from Rego files; `capabilities: false` skips the builtin check on purpose. */
async function bundleOf(files: Record<string, string>, opts: { capabilities?: boolean; revision?: string } = {}): Promise<Buffer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-bundle-'));
  try {
    for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text);
    const out = path.join(dir, 'out.tar.gz');
    const opa = await findOpa();
    if (opts.capabilities === false) {
      await runOpa(opa, ['build', '-t', 'wasm', '-e', 'scopegate/main/decision', ...(opts.revision ? ['--revision', opts.revision] : []), '-o', out, path.join(dir, 'policy.rego')]);
    } else {
      await buildWasmBundle({ opa, dirs: [path.join(dir, 'policy.rego')], outFile: out });
    }
    return await readFile(out);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('policy hot reload', () => {
  let pdp: RunningPdp;
  let folder: string;
  let token: string;

  before(async () => {
    folder = await policyFolder({});
    pdp = await startPdp({ listen: false, env: { SCOPEGATE_POLICY_DIR: folder, SCOPEGATE_POLICY_WATCH: 'true', SCOPEGATE_POLICY_BUNDLE: '' } });
    token = await pdp.mint('agent-1', ['sql:orders-db:select:public.orders']);
  });
  after(async () => {
    await pdp.close();
    await rm(folder, { recursive: true, force: true });
  });

  const upload = (bundle: Buffer) =>
    pdp.app.inject({
      method: 'PUT',
      url: '/v1/policies',
      headers: { authorization: `Bearer ${pdp.adminKey}`, 'content-type': 'application/gzip' },
      payload: bundle,
    });

  const decide = async () =>
    (
      await pdp.app.inject({
        method: 'POST',
        url: '/v1/decide',
        headers: { authorization: `Bearer ${pdp.shimKey}` },
        payload: { token, resource: ORDERS, request: selectOrders },
      })
    ).json();

  it('recompiles and swaps when a file in the folder changes', async () => {
    const before = await decide();
    assert.equal(before.effect, 'allow');
    // An extension that denies everything on orders-db.
    await writeFile(
      path.join(folder, 'ext.rego'),
      'package scopegate.ext\n\ndeny contains "frozen orders-db" if input.resource.name == "orders-db"\n',
    );
    let after = before;
    for (let i = 0; i < 200 && after.policy_revision === before.policy_revision; i++) {
      await new Promise((r) => setTimeout(r, 50));
      after = await decide();
    }
    assert.notEqual(after.policy_revision, before.policy_revision, 'the revision changed');
    assert.equal(after.effect, 'deny');
    assert.ok(after.reasons.includes('frozen orders-db'));
  });

  it('keeps the running policy when the changed folder does not compile', async () => {
    const good = await decide();
    await assert.rejects(
      (async () => {
        await writeFile(path.join(folder, 'broken.rego'), 'package scopegate.ext\n\ndeny contains x if {\n');
        await pdp.app.reloadPolicyDirs();
      })(),
      (err: Error & { code?: string }) => err.code === 'policy_compile_failed',
    );
    await rm(path.join(folder, 'broken.rego'));
    const still = await decide();
    assert.equal(still.policy_revision, good.policy_revision);
  });

  it('PUT /v1/policies swaps in an uploaded bundle (admin only)', async () => {
    const bundle = await bundleOf({
      'policy.rego': 'package scopegate.main\n\ndecision := {"effect": "allow", "reasons": ["uploaded"], "obligations": {}, "ttl_ms": 1000}\n',
    }, { capabilities: false, revision: 'uploaded-1' });
    const put = (key: string) =>
      pdp.app.inject({
        method: 'PUT',
        url: '/v1/policies',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/gzip' },
        payload: bundle,
      });
    assert.equal((await put(pdp.shimKey)).statusCode, 403);
    const res = await put(pdp.adminKey);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().revision, 'uploaded-1');
    const d = await decide();
    assert.equal(d.policy_revision, 'uploaded-1');
    assert.deepEqual(d.reasons, ['uploaded']);
  });

  it('refuses a bundle that is not one', async () => {
    const res = await pdp.app.inject({
      method: 'PUT',
      url: '/v1/policies',
      headers: { authorization: `Bearer ${pdp.adminKey}`, 'content-type': 'application/gzip' },
      payload: Buffer.from('definitely not a tarball'),
    });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().code, 'bundle_invalid');
    assert.equal((await decide()).policy_revision, 'uploaded-1');
  });

  it('a policy that fails at run time denies with policy_evaluation_failed', async () => {
    // Two different values for one complete rule: a conflict error when evaluated.
    const bundle = await bundleOf({
      'policy.rego': [
        'package scopegate.main',
        '',
        'decision := {"effect": "allow", "reasons": [], "obligations": {}, "ttl_ms": 0} if input.resource.kind',
        'decision := {"effect": "deny", "reasons": [], "obligations": {}, "ttl_ms": 0} if input.resource.name',
        '',
      ].join('\n'),
    }, { capabilities: false, revision: 'conflict' });
    const up = await upload(bundle);
    assert.equal(up.statusCode, 200, up.body);
    const d = await decide();
    assert.equal(d.effect, 'deny');
    assert.equal(d.allow, false);
    assert.equal(d.code, 'policy_evaluation_failed');
  });

  it('a builtin the host does not provide denies (and the capabilities file refuses it at build time)', async () => {
    const rego = [
      'package scopegate.main',
      '',
      'decision := {"effect": "allow", "reasons": [], "obligations": {}, "ttl_ms": 0} if {',
      '\tnet.cidr_expand("10.0.0.0/30")',
      '}',
      '',
    ].join('\n');
    await assert.rejects(bundleOf({ 'policy.rego': rego }), (err: Error & { code?: string }) => err.code === 'policy_compile_failed');
    const bundle = await bundleOf({ 'policy.rego': rego }, { capabilities: false, revision: 'missing-builtin' });
    const up = await upload(bundle);
    assert.equal(up.statusCode, 200, up.body);
    const d = await decide();
    assert.equal(d.effect, 'deny');
    assert.equal(d.allow, false);
    assert.equal(d.code, 'policy_evaluation_failed');
  });
});
