/** The in-memory revocation check and its pruning, as data. */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { EXPIRY_MARGIN_MS, RevocationSet, type Revocation } from '../../pdp-server/src/revocation/revocation-service.js';
import type { SubjectClaims } from '../../pdp-server/src/contract.js';

const T = Date.parse('2030-01-01T00:00:00Z');
const iso = (ms: number) => new Date(ms).toISOString();
const rev = (over: Partial<Revocation>): Revocation => ({
  id: Math.random().toString(36),
  jti: null,
  sub: null,
  issued_before: null,
  reason: null,
  created_at: iso(T),
  expires_at: null,
  by: 'admin',
  ...over,
});
const tok = (over: Partial<SubjectClaims>): SubjectClaims => ({ sub: 'agent', iss: 'scopegate', scopes: [], ...over });

it('jti revocations hold until the token expiry plus the margin, then are pruned', () => {
  const set = new RevocationSet();
  set.apply(rev({ jti: 'j1', expires_at: iso(T + 60_000) }), T);
  assert.equal(set.isRevoked(tok({ jti: 'j1' })), true);
  assert.equal(set.isRevoked(tok({ jti: 'j2' })), false);
  assert.equal(set.prune(T + 60_000 + EXPIRY_MARGIN_MS - 1), 0);
  assert.equal(set.isRevoked(tok({ jti: 'j1' })), true);
  assert.equal(set.prune(T + 60_000 + EXPIRY_MARGIN_MS), 1);
  assert.equal(set.isRevoked(tok({ jti: 'j1' })), false);
});

it('a revocation whose token has long expired is not kept at all', () => {
  const set = new RevocationSet();
  set.apply(rev({ jti: 'old', expires_at: iso(T - EXPIRY_MARGIN_MS - 1) }), T);
  assert.equal(set.isRevoked(tok({ jti: 'old' })), false);
});

it('jti revocations without expiry are never pruned', () => {
  const set = new RevocationSet();
  set.apply(rev({ jti: 'forever' }), T);
  assert.equal(set.prune(T + 10 * 365 * 86_400_000), 0);
  assert.equal(set.isRevoked(tok({ jti: 'forever' })), true);
});

it('subject revocations compare iat (seconds) with issued_before, fail closed without iat', () => {
  const set = new RevocationSet();
  set.apply(rev({ sub: 's', issued_before: iso(T + 500) }), T);
  const sec = T / 1000;
  assert.equal(set.isRevoked(tok({ sub: 's', iat: sec - 1 })), true);
  assert.equal(set.isRevoked(tok({ sub: 's', iat: sec })), true, 'same second counts as before');
  assert.equal(set.isRevoked(tok({ sub: 's', iat: sec + 1 })), false);
  assert.equal(set.isRevoked(tok({ sub: 's' })), true, 'no iat');
  assert.equal(set.isRevoked(tok({ sub: 's', iat: Number.NaN })), true);
  assert.equal(set.isRevoked(tok({ sub: 'other', iat: sec - 1 })), false);
});

it('a later subject revocation moves the cut-off forward, an older one never back', () => {
  const set = new RevocationSet();
  const sec = T / 1000;
  set.apply(rev({ sub: 's', issued_before: iso(T + 10_000) }), T);
  set.apply(rev({ sub: 's', issued_before: iso(T) }), T);
  assert.equal(set.isRevoked(tok({ sub: 's', iat: sec + 5 })), true);
  assert.equal(set.isRevoked(tok({ sub: 's', iat: sec + 11 })), false);
});

it('re-applying a jti keeps the later expiry', () => {
  const set = new RevocationSet();
  set.apply(rev({ jti: 'j', expires_at: iso(T + 1000) }), T);
  set.apply(rev({ jti: 'j', expires_at: iso(T + 500_000) }), T);
  set.apply(rev({ jti: 'j', expires_at: iso(T + 2000) }), T);
  assert.equal(set.prune(T + 2000 + EXPIRY_MARGIN_MS), 0);
  assert.equal(set.isRevoked(tok({ jti: 'j' })), true);
});
