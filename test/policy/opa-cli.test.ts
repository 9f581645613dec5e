/**
 * The opa CLI wrapper against the real opa binary and the real WASM runtime: locating opa,
 * building bundles from several folders (extend / replace the library), the capabilities
 * gate, and a runtime evaluation error surfacing as a throw (so the PDP can deny).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { BUNDLED_POLICY_DIR, REPO_ROOT } from '../../pdp-server/src/config.js';
import type { PolicyResult } from '../../pdp-server/src/contract.js';
import { isScopegateError } from '../../pdp-server/src/errors.js';
import {
  DECISION_ENTRYPOINT,
  OPA_VERSION,
  PACKAGE_ENTRYPOINT,
  buildWasmBundle,
  findOpa,
  readBundleFiles,
  runOpa,
} from '../../pdp-server/src/policy/opa-cli.js';
import { evaluateOne, loadBundle } from './policy-bundle.js';

const execFileAsync = promisify(execFile);

const toolInput = (scopes: string[]) => ({
  subject: { sub: 'agent', iss: 'scopegate', scopes },
  resource: { kind: 'tool', name: 'web-search' },
  request: { tool: { name: 'web-search' } },
  context: { chain: 'support-bot' },
});

describe('opa CLI wrapper', () => {
  let opa: string;
  let tmp: string;

  before(async () => {
    opa = await findOpa();
    tmp = await mkdtemp(path.join(os.tmpdir(), 'scopegate-policy-test-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function writeDir(name: string, files: Record<string, string>): Promise<string> {
    const dir = path.join(tmp, name);
    for (const [rel, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), text);
    }
    return dir;
  }

  test('findOpa locates the pinned opa version', async () => {
    const { stdout } = await runOpa(opa, ['version']);
    assert.match(stdout, new RegExp(`^Version: ${OPA_VERSION.replaceAll('.', '\\.')}$`, 'm'));
    assert.equal(await findOpa(opa), opa, 'a configured path is used as given');
  });

  test('findOpa rejects a configured path that is not executable', async () => {
    await assert.rejects(findOpa(path.join(tmp, 'no-such-opa')), (err) => isScopegateError(err) && err.code === 'policy_compile_failed');
  });

  test('ensure-opa.sh prints SCOPEGATE_OPA_BIN when set', async () => {
    const { stdout } = await execFileAsync('bash', [path.join(REPO_ROOT, 'scripts', 'ensure-opa.sh')], {
      env: { ...process.env, SCOPEGATE_OPA_BIN: opa },
    });
    assert.equal(stdout.trim(), opa);
  });

  test('a user folder extends the library through scopegate.ext; cases and READMEs are not compiled', async () => {
    const ext = await writeDir('ext', {
      'chains.rego': [
        'package scopegate.ext',
        '',
        'deny contains "chain_blocked" if input.context.chain == "blocked-bot"',
        '',
        'mask contains {"detector": "phone", "method": "redact"} if input.resource.kind == "tool"',
        '',
      ].join('\n'),
      'data.json': JSON.stringify({ scopegate_config: { tool: { resources: { 'web-search': { approval: { mode: 'once' } } } } } }),
      'cases/example.json': JSON.stringify({ name: 'not data', input: {}, expected: { effect: 'deny' } }),
      'README.md': '# my policies\n',
      'chains_test.rego': 'package scopegate.ext_test\n\ntest_x if time.now_ns() > 0\n',
    });
    const out = path.join(tmp, 'ext.tar.gz');
    await buildWasmBundle({ opa, dirs: [BUNDLED_POLICY_DIR, ext], outFile: out });
    const files = await readBundleFiles(await readFile(out));
    const data = JSON.parse(files.get('/data.json')?.toString('utf8') ?? '{}') as Record<string, unknown>;
    assert.equal(data['cases'], undefined, 'cases/ is not loaded as data');
    assert.equal(data['builtins'], undefined, 'capabilities.json is not loaded as data');

    const policy = await loadBundle(out);
    const approved = evaluateOne(policy, toolInput(['tool:web-search:call']), DECISION_ENTRYPOINT) as PolicyResult;
    assert.equal(approved.effect, 'approval_required', 'the user data.json merges into the library data');
    assert.deepEqual(approved.obligations?.mask, [{ detector: 'phone', method: 'redact' }]);

    const blocked = { ...toolInput(['tool:web-search:call']), context: { chain: 'blocked-bot' } };
    const denied = evaluateOne(policy, blocked, DECISION_ENTRYPOINT) as PolicyResult;
    assert.equal(denied.effect, 'deny');
    assert.deepEqual(denied.reasons, ['chain_blocked']);

    const pkg = evaluateOne(policy, toolInput([]), PACKAGE_ENTRYPOINT) as { allow: boolean; decision: PolicyResult };
    assert.equal(pkg.allow, false);
    assert.equal(pkg.decision.effect, 'deny');
  });

  test('a user folder replaces the library by defining its own scopegate.main', async () => {
    const own = await writeDir('replace', {
      'main.rego': [
        'package scopegate.main',
        '',
        'decision := {"effect": "allow", "reasons": ["replaced"], "obligations": {}, "ttl_ms": 1000} if input.subject.sub == "root"',
        '',
        'else := {"effect": "deny", "reasons": ["replaced"], "obligations": {}, "ttl_ms": 0}',
        '',
      ].join('\n'),
    });
    const out = path.join(tmp, 'replace.tar.gz');
    await buildWasmBundle({ opa, dirs: [own], outFile: out });
    const policy = await loadBundle(out);
    const d = evaluateOne(policy, { ...toolInput([]), subject: { sub: 'root', iss: 'x', scopes: [] } }, DECISION_ENTRYPOINT) as PolicyResult;
    assert.deepEqual(d, { effect: 'allow', reasons: ['replaced'], obligations: {}, ttl_ms: 1000 });
  });

  test('a builtin outside capabilities.json fails the build with policy_compile_failed', async () => {
    const bad = await writeDir('uses-time', {
      'time.rego': 'package scopegate.ext\n\ndeny contains "too_late" if time.now_ns() > 0\n',
    });
    const out = path.join(tmp, 'bad.tar.gz');
    await assert.rejects(buildWasmBundle({ opa, dirs: [BUNDLED_POLICY_DIR, bad], outFile: out }), (err) => {
      assert.ok(isScopegateError(err));
      assert.equal(err.code, 'policy_compile_failed');
      assert.match(err.message, /time\.now_ns/);
      return true;
    });
    await assert.rejects(stat(out), 'no output file is left behind');
  });

  test('a Rego syntax error fails the build with opa’s message', async () => {
    const bad = await writeDir('syntax', { 'x.rego': 'package scopegate.ext\n\ndeny contains if {\n' });
    await assert.rejects(
      buildWasmBundle({ opa, dirs: [bad], outFile: path.join(tmp, 'syntax.tar.gz') }),
      (err) => isScopegateError(err) && err.code === 'policy_compile_failed' && /rego_parse_error/.test(err.message),
    );
  });

  test('an entrypoint that errors at runtime throws from evaluate (the PDP denies)', async () => {
    // Two definitions of a complete rule yielding different values: a conflict only at eval time.
    const conflicting = await writeDir('conflict', {
      'main.rego': [
        'package scopegate.main',
        '',
        'effect := "allow" if input.a',
        '',
        'effect := "deny" if input.b',
        '',
        'decision := {"effect": effect, "reasons": ["x"], "obligations": {}, "ttl_ms": 0}',
        '',
      ].join('\n'),
    });
    const out = path.join(tmp, 'conflict.tar.gz');
    await buildWasmBundle({ opa, dirs: [conflicting], outFile: out });
    const policy = await loadBundle(out);
    assert.equal((evaluateOne(policy, { a: true }, DECISION_ENTRYPOINT) as PolicyResult).effect, 'allow');
    assert.throws(() => policy.evaluate({ a: true, b: true }, DECISION_ENTRYPOINT));
  });

  test('policies/capabilities.json is what scripts/capabilities.ts generates', async () => {
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts', 'capabilities.ts'), '--check'], {
      cwd: REPO_ROOT,
    });
    assert.match(stdout, /is up to date/);
  });
});
