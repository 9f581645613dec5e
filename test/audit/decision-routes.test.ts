import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { createDecisionLog, type DecisionLogEntry } from '../../pdp-server/src/audit/decision-log.js';
import { BACKENDS, openTestDb, silentLog, tempDir, testConfig, type TestDb } from './test-backends.js';
import { auth, buildAuditApp, KEY_ENV, type RoleName } from './test-app.js';

const BASE = Date.parse('2031-06-01T10:00:00.000Z');

function seedEntries(): DecisionLogEntry[] {
  const out: DecisionLogEntry[] = [];
  for (let i = 0; i < 30; i++) {
    out.push({
      decision_id: randomUUID(),
      time: new Date(BASE + i * 1000).toISOString(),
      subject: i % 3 === 0 ? 'agent-b' : 'agent-a',
      issuer: 'scopegate',
      jti: `jti-${i}`,
      chain: i < 10 ? 'support-bot' : 'billing-bot',
      step: `step-${i}`,
      session_id: i < 8 ? 'sess-replay' : `sess-${i}`,
      shim: 'http-proxy',
      resource_kind: i % 2 === 0 ? 'sql' : 'http',
      resource_name: i % 2 === 0 ? 'orders-db' : 'crm',
      request_summary: { n: i },
      effect: i % 5 === 0 ? 'deny' : 'allow',
      reasons: [`reason ${i}`],
      code: i % 5 === 0 ? 'policy_denied' : null,
      policy_revision: 'rev-7',
      latency_us: 100 + i,
      cache_hit: i % 4 === 0,
      approval_id: null,
    });
  }
  // Two rows in the same millisecond: the keyset must still order and page them exactly.
  out.push({ ...out[29]!, decision_id: randomUUID(), step: 'same-ms' });
  return out;
}

for (const backend of BACKENDS) {
  describe(`decision query API (${backend})`, () => {
    let t: TestDb;
    let app: FastifyInstance;
    let cleanupDir: () => Promise<void>;
    const entries = seedEntries();

    before(async () => {
      t = await openTestDb(backend);
      const tmp = await tempDir('sg-droutes-');
      cleanupDir = tmp.cleanup;
      const config = testConfig(tmp.dir, KEY_ENV);
      const log = await createDecisionLog(t.db, config, silentLog);
      for (const e of entries) log.append(e);
      await log.close();
      app = await buildAuditApp(config, { db: t.db });
    });
    after(async () => {
      await app.close();
      await t.cleanup();
      await cleanupDir();
    });

    it('filters by subject, effect, resource, chain and time range', async () => {
      const get = async (qs: string) => {
        const res = await app.inject({ url: `/v1/decisions?${qs}&limit=1000`, headers: auth('auditor') });
        assert.equal(res.statusCode, 200, res.body);
        return res.json().items as Array<Record<string, unknown>>;
      };
      const expect = (pred: (e: DecisionLogEntry) => boolean) => entries.filter(pred).map((e) => e.decision_id).sort();
      const ids = (items: Array<Record<string, unknown>>) => items.map((i) => i.decision_id as string).sort();
      assert.deepEqual(ids(await get('subject=agent-b')), expect((e) => e.subject === 'agent-b'));
      assert.deepEqual(ids(await get('effect=deny&subject=agent-a')), expect((e) => e.effect === 'deny' && e.subject === 'agent-a'));
      assert.deepEqual(ids(await get('resource=sql:orders-db')), expect((e) => e.resource_name === 'orders-db'));
      assert.deepEqual(ids(await get('resource=crm&chain=support-bot')), expect((e) => e.resource_name === 'crm' && e.chain === 'support-bot'));
      const from = new Date(BASE + 5000).toISOString();
      const to = new Date(BASE + 9000).toISOString();
      assert.deepEqual(
        ids(await get(`from=${from}&to=${to}`)),
        expect((e) => e.time >= from && e.time < to),
      );
      const one = (await get(`subject=agent-b&from=${new Date(BASE).toISOString()}&to=${new Date(BASE + 1).toISOString()}`))[0]!;
      assert.equal(one.time, '2031-06-01T10:00:00.000000Z');
      assert.deepEqual(one.request_summary, { n: 0 });
      assert.equal(one.policy_revision, 'rev-7');
    });

    it('pages with an opaque keyset cursor without gaps or repeats', async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      for (let page = 0; page < 50; page++) {
        const qs: string = `limit=4${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
        const res = await app.inject({ url: `/v1/decisions?${qs}`, headers: auth('admin') });
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json() as { items: Array<{ decision_id: string; time: string }>; next_cursor: string | null };
        seen.push(...body.items.map((i) => i.decision_id));
        cursor = body.next_cursor;
        if (cursor === null) break;
      }
      assert.equal(seen.length, entries.length);
      assert.equal(new Set(seen).size, entries.length);
      assert.deepEqual([...seen].sort(), entries.map((e) => e.decision_id).sort());

      const bad = await app.inject({ url: '/v1/decisions?cursor=bm90LWEtY3Vyc29y', headers: auth('admin') });
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.json().code, 'bad_request');
      const tooMany = await app.inject({ url: '/v1/decisions?limit=1001', headers: auth('admin') });
      assert.equal(tooMany.json().code, 'bad_request');
    });

    it('returns one decision by id, 404 for an unknown one', async () => {
      const e = entries[7]!;
      const res = await app.inject({ url: `/v1/decisions/${e.decision_id}`, headers: auth('auditor') });
      assert.equal(res.statusCode, 200);
      assert.equal(res.json().step, e.step);
      assert.equal(res.json().cache_hit, e.cache_hit);
      const missing = await app.inject({ url: `/v1/decisions/${randomUUID()}`, headers: auth('auditor') });
      assert.equal(missing.statusCode, 404);
      assert.equal(missing.json().code, 'not_found');
    });

    it('replays a session as an ordered timeline', async () => {
      const res = await app.inject({ url: '/v1/sessions/sess-replay', headers: auth('auditor') });
      assert.equal(res.statusCode, 200);
      const body = res.json() as { session_id: string; items: Array<{ step: string; reasons: string[] }> };
      const expected = entries.filter((e) => e.session_id === 'sess-replay');
      assert.deepEqual(body.items.map((i) => i.step), expected.map((e) => e.step));
      assert.deepEqual(body.items[3]!.reasons, expected[3]!.reasons);
      const none = await app.inject({ url: '/v1/sessions/nope', headers: auth('auditor') });
      assert.equal(none.json().code, 'not_found');
    });

    it('exports NDJSON in OPA decision-log field names', async () => {
      const res = await app.inject({ url: '/v1/decisions/export?chain=support-bot', headers: auth('auditor') });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /application\/x-ndjson/);
      const lines = res.body.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
      const expected = entries.filter((e) => e.chain === 'support-bot');
      assert.deepEqual(lines.map((l) => l.decision_id), expected.map((e) => e.decision_id));
      const first = lines[0]!;
      const e0 = expected[0]!;
      assert.equal(first.timestamp, '2031-06-01T10:00:00.000000Z');
      assert.equal(first.path, 'scopegate/main/decision');
      assert.deepEqual(first.input.resource, { kind: e0.resource_kind, name: e0.resource_name });
      assert.equal(first.input.subject.sub, e0.subject);
      assert.equal(first.result.effect, e0.effect);
      assert.equal(first.result.allow, e0.effect === 'allow');
      assert.equal(first.labels.id, 'test-pdp');
      assert.equal(typeof first.labels.version, 'string');
      assert.equal(first.metrics.timer_server_handler_ns, e0.latency_us * 1000);
      assert.equal(first.requested_by, 'http-proxy');
      assert.equal(first.revision, 'rev-7');
    });

    it('refuses every other role on every route', async () => {
      const urls = ['/v1/decisions', `/v1/decisions/${entries[0]!.decision_id}`, '/v1/sessions/sess-replay', '/v1/decisions/export'];
      for (const url of urls) {
        const anon = await app.inject({ url });
        assert.equal(anon.statusCode, 401, url);
        assert.equal(anon.json().code, 'unauthenticated');
        const wrong = await app.inject({ url, headers: { authorization: 'Bearer not-a-key-at-all-000000' } });
        assert.equal(wrong.json().code, 'unauthenticated');
        for (const role of ['shim', 'approver'] as RoleName[]) {
          const res = await app.inject({ url, headers: auth(role) });
          assert.equal(res.statusCode, 403, `${role} ${url}`);
          assert.equal(res.json().code, 'forbidden');
        }
        for (const role of ['auditor', 'admin'] as RoleName[]) {
          const res = await app.inject({ url, headers: auth(role) });
          assert.equal(res.statusCode, 200, `${role} ${url}`);
        }
      }
    });
  });
}
