/** stepTokens: one token per step from the PDP's real mint API; cached, re-minted before expiry, never broader than asked. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { decodeJwt } from 'jose';
import { pdpTokenMinter, stepTokens, TokenMintError } from '../../shims/sdk/src/index.js';
import { startPdp, type RunningPdp } from '../support/pdp.js';

let pdp: RunningPdp;
before(async () => {
  pdp = await startPdp();
});
after(async () => {
  await pdp.close();
});

test('each step gets its own token with exactly its scopes, chain and step claims', async () => {
  let clock = Date.now();
  let mints = 0;
  const minter = pdpTokenMinter({ url: pdp.url, key: pdp.adminKey });
  const tokens = stepTokens(
    async (req) => (mints++, minter(req)),
    { lookup: ['sql:orders-db:select:public.orders'], write: ['sql:orders-db:update:public.orders'] },
    { subject: 'support-bot', chain: 'support', ttlS: 120, now: () => clock },
  );
  const [a, b] = await Promise.all([tokens.token('lookup'), tokens.token('lookup')]);
  assert.equal(a, b);
  assert.equal(mints, 1, 'concurrent callers share one mint');
  const claims = decodeJwt(a);
  assert.equal(claims.sub, 'support-bot');
  assert.equal(claims.chain, 'support');
  assert.equal(claims.step, 'lookup');
  assert.deepEqual(claims.scopes, ['sql:orders-db:select:public.orders']);
  const w = decodeJwt(await tokens.token('write'));
  assert.equal(w.step, 'write');
  assert.notEqual(w.jti, claims.jti);
  // Near expiry (within the refresh margin) a fresh token is minted.
  clock += 100_000;
  const c = await tokens.token('lookup');
  assert.notEqual(decodeJwt(c).jti, claims.jti);
  assert.equal(mints, 3);
  await assert.rejects(tokens.token('admin'), /unknown step/);
  assert.throws(() => stepTokens(minter, { empty: [] }, { subject: 'x' }), /at least one scope/);
});

test('the default minter fails loudly without a minting credential', async () => {
  const tokens = stepTokens(pdpTokenMinter({ url: pdp.url, key: pdp.shimKey }), { s: ['tool:x:call'] }, { subject: 'x' });
  await assert.rejects(tokens.token('s'), (err: unknown) => err instanceof TokenMintError && err.status === 403);
});
