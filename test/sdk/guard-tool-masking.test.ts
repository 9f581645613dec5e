/**
 * Tool results masked per the decision's obligations. The default library has no masking
 * rules for tools, so this PDP compiles it with a small `scopegate.ext` policy that adds some.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { tool } from '@langchain/core/tools';
import { z } from 'zod';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import { guardTool, PdpClient } from '../../shims/sdk/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

const EXT = `package scopegate.ext

mask contains {"target": "ssn", "method": "redact"} if input.resource.kind == "tool"

mask contains {"detector": "email", "method": "redact"} if input.resource.kind == "tool"
`;

let dir: string;
let pdp: RunningPdp;
let client: PdpClient;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'scopegate-sdk-ext-'));
  await writeFile(path.join(dir, 'ext.rego'), EXT);
  pdp = await startPdp({ env: { SCOPEGATE_POLICY_DIR: `${path.join(REPO_ROOT, 'policies')}:${dir}`, SCOPEGATE_POLICY_BUNDLE: '' } });
  client = new PdpClient({ url: pdp.url, key: pdp.shimKey, shim: 'sdk' });
});
after(async () => {
  await client.close();
  await pdp.close();
  await rm(dir, { recursive: true, force: true });
});

const RECORD = { name: 'Ada', ssn: '123-45-6789', note: 'write to ada@example.com' };

test('JSON strings, objects and content_and_artifact results are masked before the model sees them', async () => {
  const token = await pdp.mint('agent', ['tool:*:call']);
  const asString = guardTool(tool(async () => JSON.stringify(RECORD), { name: 'as-string', description: 'd', schema: z.object({}) }), { pdp: client, token });
  const s = JSON.parse(String(await asString.invoke({}))) as typeof RECORD;
  assert.equal(s.name, 'Ada');
  assert.notEqual(s.ssn, RECORD.ssn);
  assert.ok(!s.note.includes('ada@example.com'));

  const text = guardTool(tool(async () => `Reach Ada at ada@example.com`, { name: 'as-text', description: 'd', schema: z.object({}) }), { pdp: client, token });
  const t = String(await text.invoke({}));
  assert.ok(t.startsWith('Reach Ada at '));
  assert.ok(!t.includes('ada@example.com'));

  const both = guardTool(
    tool(async () => ['found Ada (ada@example.com)', RECORD] as [string, typeof RECORD], {
      name: 'with-artifact',
      description: 'd',
      schema: z.object({}),
      responseFormat: 'content_and_artifact',
    }),
    { pdp: client, token },
  );
  const msg = await both.invoke({ id: 'call_9', name: 'with-artifact', args: {}, type: 'tool_call' });
  assert.ok(!String(msg.content).includes('ada@example.com'));
  const artifact = msg.artifact as typeof RECORD;
  assert.notEqual(artifact.ssn, RECORD.ssn);
  assert.ok(!artifact.note.includes('ada@example.com'));
});
