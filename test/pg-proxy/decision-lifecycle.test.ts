/**
 * Decisions over a session's life: the token checked at login, revocation biting mid-session
 * (also on statements prepared before it), and statements held for a human approval.
 * Real PDP (default policy), real Postgres, node-postgres clients.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJwt } from 'jose';
import type pg from 'pg';
import { PdpClient } from '../../shims/pdp-client/src/index.js';
import { adminClient, queryError, startHarness, type Harness } from './harness.js';

let h: Harness;
const extraClients: PdpClient[] = [];

before(async () => {
  // No clock tolerance, so a one-second token is really expired a moment later.
  h = await startHarness({}, { pdpEnv: { SCOPEGATE_CLOCK_SKEW_S: '0' } });
});
after(async () => {
  await h?.close();
  for (const c of extraClients) await c.close();
});

async function pdpCall(method: 'GET' | 'POST', path: string, key: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${h.pdp.url}${path}`, { method, headers: { authorization: `Bearer ${key}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function revoke(token: string): Promise<void> {
  const { jti } = decodeJwt(token);
  const r = await pdpCall('POST', `/v1/tokens/${String(jti)}/revoke`, h.pdp.adminKey);
  assert.equal(r.status, 201);
}

/** The error a statement gets, with the detail field (where the proxy puts its reason). */
async function denial(c: pg.Client, sql: string): Promise<{ code: string; message: string; detail: string }> {
  try {
    await c.query(sql);
  } catch (err) {
    const e = err as { code?: string; message: string; detail?: string };
    return { code: e.code ?? '', message: e.message, detail: e.detail ?? '' };
  }
  throw new Error(`expected an error from: ${sql}`);
}

const loginError = (pattern: RegExp, code = '28P01') => (e: { code?: string; message: string }) => e.code === code && pattern.test(e.message);

describe('pg-proxy: token checked at login', () => {
  it('lets a valid token in', async () => {
    const c = await h.client(await h.token(['sql:orders-db:select:public.orders']));
    assert.equal((await c.query('select count(*)::int as n from orders')).rows[0].n, 2);
    const check = h.events.filter((e) => e.event === 'login_check').at(-1);
    assert.equal(check?.code, null);
  });
  it('refuses an expired token with 28P01 naming the reason', async () => {
    const token = await h.token(['sql:orders-db:select:public.orders'], { ttl_s: 1 });
    await sleep(2100);
    await assert.rejects(h.client(token), loginError(/token_expired/));
  });
  it('refuses a revoked token with 28P01', async () => {
    const token = await h.token(['sql:orders-db:select:public.orders']);
    await revoke(token);
    await assert.rejects(h.client(token), loginError(/token_revoked/));
  });
  it('refuses the login when the PDP cannot be reached (fail closed)', async () => {
    const unreachable = new PdpClient({ url: 'http://127.0.0.1:9', key: 'x', shim: 'pg-proxy', timeoutMs: 500 });
    extraClients.push(unreachable);
    const p = await h.startProxy({ decider: unreachable });
    await assert.rejects(p.client(await h.token(['sql:orders-db:select'])), loginError(/could not be checked/, '08006'));
  });
});

describe('pg-proxy: revocation mid-session', () => {
  it('denies the next statement after the token is revoked', async () => {
    const token = await h.token(['sql:orders-db:select:public.*']);
    const c = await h.client(token);
    assert.equal((await c.query('select note from orders where id = 10')).rows[0].note, 'first');
    await revoke(token);
    // A statement the session has not run yet goes to the PDP, which checks revocation first.
    // (A statement already allowed may still be answered from the PDP client's local cache
    // until that decision's ttl_ms ends: see the README.)
    const e = await denial(c, 'select name from customers where id = 1');
    assert.equal(e.code, '42501');
    assert.match(e.detail, /token_revoked/);
  });
  it('reuses a cached allow per statement shape, reports every reuse, and drops it on revocation', async () => {
    const client = new PdpClient({ url: h.pdp.url, key: h.pdp.shimKey, shim: 'pg-proxy' });
    extraClients.push(client);
    for (let i = 0; i < 200 && !client.cacheLive; i++) await sleep(25);
    assert.ok(client.cacheLive, 'the revocation feed connects');
    let reused = 0;
    const p = await h.startProxy({
      decider: {
        decide: (r) => client.decide(r),
        cachedAllowLease: (r) => client.cachedAllowLease(r),
        leaseValid: (l) => client.leaseValid(l),
        recordCachedUse: (r, d) => {
          reused++;
          client.recordCachedUse(r, d);
        },
      },
    });
    const token = await h.token(['sql:orders-db:select:public.*']);
    const c = await p.client(token);
    // One shape, other constants: the PDP, then the client's cache, then the session's lease.
    for (let i = 0; i < 6; i++) assert.ok((await c.query(`select note from orders where id = ${10 + (i % 2)}`)).rows[0].note);
    assert.ok(reused >= 4, `each reuse of the lease is reported (${reused})`);
    await revoke(token);
    let e: { code: string; detail: string } | undefined;
    for (let i = 0; i < 100 && !e; i++) {
      e = await c.query('select note from orders where id = 10').then(
        () => undefined,
        (err: { code?: string; detail?: string }) => ({ code: err.code ?? '', detail: err.detail ?? '' }),
      );
      if (!e) await sleep(20);
    }
    assert.equal(e?.code, '42501', 'the revocation ends the lease');
    assert.match(e?.detail ?? '', /token_revoked/);
  });
  it('decides prepared statements again at each Bind, so revocation stops them too', async () => {
    // Without the local cache every Bind reaches the PDP; with it, within ttl_ms (default 30 s).
    const uncached = new PdpClient({ url: h.pdp.url, key: h.pdp.shimKey, shim: 'pg-proxy', cacheMax: 0 });
    extraClients.push(uncached);
    const p = await h.startProxy({ decider: uncached });
    const token = await h.token(['sql:orders-db:select:public.*']);
    const c = await p.client(token);
    const q = { name: 'note-by-id', text: 'select note from orders where id = $1' };
    assert.equal((await c.query({ ...q, values: [10] })).rows[0].note, 'first');
    assert.equal((await c.query({ ...q, values: [11] })).rows[0].note, 'second');
    const before = h.events.filter((e) => e.event === 'decision').length;
    await revoke(token);
    // node-postgres sends only Bind/Execute/Sync for a statement it already prepared.
    const err = await c.query({ ...q, values: [10] }).then(
      () => undefined,
      (e: { code?: string; detail?: string }) => e,
    );
    assert.equal(err?.code, '42501');
    assert.match(err?.detail ?? '', /token_revoked/);
    assert.ok(h.events.filter((e) => e.event === 'decision').length > before, 'the Bind was decided again');
  });
});

describe('pg-proxy: approvals', () => {
  const token = () => h.token(['sql:orders-db:update:public.payroll', 'sql:orders-db:select:public.payroll']);

  it('fails with an error carrying the approval id when not holding', async () => {
    const c = await h.client(await token());
    const e = await denial(c, "update payroll set name = 'Ada L.' where id = 1");
    assert.equal(e.code, '42501');
    const id = /approval_id=([0-9a-f-]{36})/.exec(e.detail)?.[1];
    assert.ok(id, e.detail);
    const a = await pdpCall('GET', `/v1/approvals/${id}`, h.pdp.approverKey);
    assert.equal(a.body.status, 'pending');
  });

  /** Start a statement through a holding proxy, wait until it is held, return its approval id. */
  async function held(c: pg.Client, sql: string): Promise<{ result: Promise<pg.QueryResult | { code?: string; detail?: string }>; id: string }> {
    const seen = h.events.length;
    const result = c.query(sql).catch((e: { code?: string; detail?: string }) => e);
    for (let i = 0; i < 200; i++) {
      const hold = h.events.slice(seen).find((e) => e.event === 'approval_hold');
      if (hold) return { result, id: String(hold.approval_id) };
      await sleep(50);
    }
    throw new Error('the statement was never held');
  }

  it('holds the statement until an approver approves it, then runs it', async () => {
    const p = await h.startProxy({ approvalWaitS: 20 });
    const c = await p.client(await token());
    const { result, id } = await held(c, "update payroll set name = 'Ada L.' where id = 1");
    const approved = await pdpCall('POST', `/v1/approvals/${id}/approve`, h.pdp.approverKey);
    assert.equal(approved.status, 200, JSON.stringify(approved.body));
    const r = (await result) as pg.QueryResult;
    assert.equal(r.rowCount, 1, JSON.stringify(r));
    const admin = await adminClient(h.db);
    try {
      assert.equal((await admin.query('select name from payroll where id = 1')).rows[0].name, 'Ada L.');
    } finally {
      await admin.end();
    }
  });

  it('fails the held statement when the approver denies it', async () => {
    const p = await h.startProxy({ approvalWaitS: 20 });
    const c = await p.client(await token());
    const { result, id } = await held(c, "update payroll set name = 'Nobody' where id = 2");
    assert.equal((await pdpCall('POST', `/v1/approvals/${id}/deny`, h.pdp.approverKey)).status, 200);
    const e = (await result) as { code?: string; detail?: string };
    assert.equal(e.code, '42501');
    assert.match(e.detail ?? '', new RegExp(`approval denied \\(approval_id=${id}\\)`));
    // The session is still usable.
    assert.equal((await c.query('select count(*)::int as n from payroll')).rows[0].n, 1);
    assert.equal((await queryError(c, 'delete from payroll')).code, '42501');
  });
});
