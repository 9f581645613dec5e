/**
 * The revocation feed shims subscribe to (`GET /v1/revocations/stream`, Server-Sent Events):
 * a revocation made through the admin API reaches an open stream as an event.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startPdp, type RunningPdp } from '../support/pdp.js';

describe('GET /v1/revocations/stream', () => {
  let pdp: RunningPdp;
  before(async () => {
    pdp = await startPdp();
  });
  after(() => pdp.close());

  it('refuses callers without a shim or admin credential', async () => {
    const anon = await fetch(`${pdp.url}/v1/revocations/stream`);
    assert.equal(anon.status, 401);
    const auditor = await fetch(`${pdp.url}/v1/revocations/stream`, { headers: { authorization: `Bearer ${pdp.auditorKey}` } });
    assert.equal(auditor.status, 403);
  });

  it('streams each revocation as an event', async () => {
    const ac = new AbortController();
    const res = await fetch(`${pdp.url}/v1/revocations/stream`, { headers: { authorization: `Bearer ${pdp.shimKey}` }, signal: ac.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (needle: string) => {
      for (let i = 0; i < 100 && !text.includes(needle); i++) {
        const { value, done } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
    };
    await readUntil('event: ready');
    assert.ok(text.includes('event: ready'));
    const revoke = await fetch(`${pdp.url}/v1/tokens/jti-streamed-1/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${pdp.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'leaked' }),
    });
    assert.equal(revoke.status, 201);
    await readUntil('jti-streamed-1');
    assert.match(text, /event: revocation\ndata: \{[^\n]*"jti":"jti-streamed-1"/);
    ac.abort();
  });
});
