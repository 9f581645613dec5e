import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import pino from 'pino';
import { loadConfig } from '../../pdp-server/src/config.js';
import { isScopegateError, type ErrorCode } from '../../pdp-server/src/errors.js';
import { SIGNING_KEY_FILE } from '../../pdp-server/src/tokens/signing-keys.js';
import { createTokenService, type TokenService } from '../../pdp-server/src/tokens/token-service.js';

const silent = pino({ level: 'silent' });
const tmpRoots: string[] = [];
const services: TokenService[] = [];

after(async () => {
  await Promise.all(services.map((s) => s.close()));
  await Promise.all(tmpRoots.map((d) => fs.rm(d, { recursive: true, force: true })));
});

async function tmpDataDir(): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'scopegate-tokens-'));
  tmpRoots.push(root);
  // A folder that does not exist yet, so the service has to create it.
  return path.join(root, 'data');
}

async function service(env: Record<string, string> = {}, log = silent): Promise<{ svc: TokenService; dataDir: string }> {
  const dataDir = env.SCOPEGATE_DATA_DIR ?? (await tmpDataDir());
  const config = loadConfig({ SCOPEGATE_CLOCK_SKEW_S: '0', ...env, SCOPEGATE_DATA_DIR: dataDir });
  const svc = await createTokenService(config, log);
  services.push(svc);
  return { svc, dataDir };
}

/** The PDP's own private key, read from its key file, to forge tokens the PDP did sign. */
async function ownKey(dataDir: string): Promise<{ key: CryptoKey; kid: string }> {
  const file = JSON.parse(await fs.readFile(path.join(dataDir, SIGNING_KEY_FILE), 'utf8')) as { keys: { jwk: JWK }[] };
  const jwk = file.keys[0]!.jwk;
  return { key: (await importJWK(jwk, 'EdDSA')) as CryptoKey, kid: await calculateJwkThumbprint(jwk) };
}

const now = () => Math.floor(Date.now() / 1000);

async function sign(
  claims: JWTPayload,
  key: CryptoKey,
  header: { alg?: string; kid?: string } = {},
): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: header.alg ?? 'EdDSA', typ: 'JWT', ...header }).sign(key);
}

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isScopegateError(err), `expected a ScopegateError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

describe('own tokens', () => {
  test('mint → verify round trip, header and claims', async () => {
    const { svc } = await service();
    const minted = await svc.mint({ sub: 'agent-1', scopes: ['sql:orders-db:select:public.orders'], chain: 'support', step: 'lookup' });
    const header = decodeProtectedHeader(minted.token);
    const [published] = svc.jwks().keys;
    assert.ok(published);
    assert.deepEqual(header, { alg: 'EdDSA', kid: published.kid, typ: 'JWT' });
    assert.equal(published.kid, await calculateJwkThumbprint(published));
    assert.equal(published.d, undefined, 'the JWKS must not publish private material');

    const c = await svc.verify(minted.token);
    assert.equal(c.iss, 'scopegate');
    assert.equal(c.aud, 'scopegate');
    assert.equal(c.sub, 'agent-1');
    assert.deepEqual(c.scopes, ['sql:orders-db:select:public.orders']);
    assert.equal(c.chain, 'support');
    assert.equal(c.step, 'lookup');
    assert.equal(c.jti, minted.jti);
    assert.match(minted.jti, /^[0-9a-f-]{36}$/);
    assert.equal(c.nbf, c.iat);
    assert.equal(c.exp! - c.iat!, 300, 'default TTL from config');
    assert.equal(minted.expires_at, new Date(c.exp! * 1000).toISOString());
    assert.deepEqual(minted.claims, c);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.scopes));
  });

  test('key is persisted (0600 in a 0700 folder) and reused by a second instance', async () => {
    const { svc: a, dataDir } = await service();
    const file = path.join(dataDir, SIGNING_KEY_FILE);
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(dataDir)).mode & 0o777, 0o700);
    assert.deepEqual(await fs.readdir(dataDir), [SIGNING_KEY_FILE], 'no temp files left behind');

    const { svc: b } = await service({ SCOPEGATE_DATA_DIR: dataDir });
    assert.deepEqual(b.jwks(), a.jwks());
    const minted = await a.mint({ sub: 'x', scopes: ['tool:web-search:call'] });
    assert.equal((await b.verify(minted.token)).sub, 'x');
  });

  test('two instances starting at once on an empty folder end up with the same key', async () => {
    const dataDir = await tmpDataDir();
    const [a, b] = await Promise.all([service({ SCOPEGATE_DATA_DIR: dataDir }), service({ SCOPEGATE_DATA_DIR: dataDir })]);
    assert.deepEqual(a.svc.jwks(), b.svc.jwks());
    const onDisk = await ownKey(dataDir);
    assert.equal(a.svc.jwks().keys[0]!.kid, onDisk.kid);
    assert.deepEqual(await fs.readdir(dataDir), [SIGNING_KEY_FILE]);
    const minted = await a.svc.mint({ sub: 'x', scopes: ['s'] });
    assert.equal((await b.svc.verify(minted.token)).sub, 'x');
  });

  test('a key file with several keys: the newest signs, all verify and are published', async () => {
    const dataDir = await tmpDataDir();
    await fs.mkdir(dataDir, { mode: 0o700 });
    const entry = async (createdAt: string) => {
      const { privateKey } = await generateKeyPair('EdDSA', { extractable: true });
      const jwk = { ...(await exportJWK(privateKey)), alg: 'EdDSA' };
      return { created_at: createdAt, jwk, kid: await calculateJwkThumbprint(jwk), key: privateKey };
    };
    const older = await entry('2024-01-01T00:00:00.000Z');
    const newer = await entry('2025-01-01T00:00:00.000Z');
    const body = { version: 1, keys: [older, newer].map(({ created_at, jwk }) => ({ created_at, jwk })) };
    await fs.writeFile(path.join(dataDir, SIGNING_KEY_FILE), JSON.stringify(body), { mode: 0o600 });

    const { svc } = await service({ SCOPEGATE_DATA_DIR: dataDir });
    assert.deepEqual(svc.jwks().keys.map((k) => k.kid), [newer.kid, older.kid]);
    const minted = await svc.mint({ sub: 'x', scopes: ['s'] });
    assert.equal(decodeProtectedHeader(minted.token).kid, newer.kid);
    const claims = { iss: 'scopegate', aud: 'scopegate', sub: 'old', scopes: ['s'], exp: now() + 60 };
    assert.equal((await svc.verify(await sign(claims, older.key, { kid: older.kid }))).sub, 'old');
  });

  test('a corrupt key file stops the start and is left alone', async () => {
    const dataDir = await tmpDataDir();
    await fs.mkdir(dataDir, { mode: 0o700 });
    const file = path.join(dataDir, SIGNING_KEY_FILE);
    await fs.writeFile(file, '{"keys": [', { mode: 0o600 });
    await assert.rejects(service({ SCOPEGATE_DATA_DIR: dataDir }), /not valid JSON/);
    assert.equal(await fs.readFile(file, 'utf8'), '{"keys": [');
  });

  test('TTL defaults, is honoured, and is capped', async () => {
    const { svc } = await service({ SCOPEGATE_TOKEN_DEFAULT_TTL_S: '60', SCOPEGATE_TOKEN_MAX_TTL_S: '600' });
    const d = await svc.mint({ sub: 'x', scopes: ['s'] });
    assert.equal(d.claims.exp! - d.claims.iat!, 60);
    const m = await svc.mint({ sub: 'x', scopes: ['s'], ttl_s: 600 });
    assert.equal(m.claims.exp! - m.claims.iat!, 600);
    await rejects(svc.mint({ sub: 'x', scopes: ['s'], ttl_s: 601 }), 'token_ttl_too_long');
  });

  test('mint with another audience: not accepted here', async () => {
    const { svc } = await service();
    const minted = await svc.mint({ sub: 'x', scopes: ['s'], aud: 'other-pdp' });
    assert.equal(minted.claims.aud, 'other-pdp');
    await rejects(svc.verify(minted.token), 'token_invalid_audience');
  });
});

describe('rejections', async () => {
  const { svc, dataDir } = await service({ SCOPEGATE_TOKEN_ALGS: 'EdDSA,ES256' });
  const own = await ownKey(dataDir);
  const attacker = (await generateKeyPair('EdDSA')).privateKey;
  const base = (): JWTPayload => ({ iss: 'scopegate', aud: 'scopegate', sub: 'a', scopes: ['s'], iat: now(), exp: now() + 60 });
  const valid = await sign(base(), own.key, { kid: own.kid });

  test('a forged-by-hand valid token is accepted (the fixture works)', async () => {
    assert.equal((await svc.verify(valid)).sub, 'a');
  });
  test('empty → token_missing', () => rejects(svc.verify(''), 'token_missing'));
  test('garbage → token_malformed', async () => {
    await rejects(svc.verify('not a token'), 'token_malformed');
    await rejects(svc.verify('a.b.c'), 'token_malformed');
    await rejects(svc.verify(`${b64({ alg: 'EdDSA' })}.!!!.sig`), 'token_malformed');
    await rejects(svc.verify('x'.repeat(20_000)), 'token_malformed');
    await rejects(svc.verify(`${b64({ alg: 'dir', enc: 'A256GCM' })}..iv.ct.tag`), 'token_malformed');
  });
  test('alg none → token_invalid_algorithm', async () => {
    const unsigned = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(base())}.`;
    await rejects(svc.verify(unsigned), 'token_invalid_algorithm');
    // Checked first: the issuer is not even looked at.
    await rejects(svc.verify(`${b64({ alg: 'none' })}.${b64({ ...base(), iss: 'evil' })}.`), 'token_invalid_algorithm');
  });
  test('HS256 signed with the public key as HMAC secret → token_invalid_algorithm', async () => {
    const pub = svc.jwks().keys[0]!;
    const signingInput = `${b64({ alg: 'HS256', typ: 'JWT', kid: own.kid })}.${b64(base())}`;
    for (const secret of [JSON.stringify(pub), Buffer.from(pub.x!, 'base64url')]) {
      const sig = createHmac('sha256', secret).update(signingInput).digest('base64url');
      await rejects(svc.verify(`${signingInput}.${sig}`), 'token_invalid_algorithm');
    }
  });
  test('an algorithm outside the allow-list → token_invalid_algorithm', async () => {
    const { svc: edOnly } = await service({ SCOPEGATE_DATA_DIR: dataDir, SCOPEGATE_TOKEN_ALGS: 'EdDSA' });
    const es = (await generateKeyPair('ES256')).privateKey;
    await rejects(edOnly.verify(await sign(base(), es, { alg: 'ES256', kid: own.kid })), 'token_invalid_algorithm');
  });
  test('an untrusted issuer, even with our kid → token_invalid_issuer', async () => {
    await rejects(svc.verify(await sign({ ...base(), iss: 'evil' }, attacker, { kid: own.kid })), 'token_invalid_issuer');
    const { iss: _drop, ...noIss } = base();
    await rejects(svc.verify(await sign(noIss, own.key, { kid: own.kid })), 'token_invalid_issuer');
  });
  test('wrong audience → token_invalid_audience', async () => {
    await rejects(svc.verify(await sign({ ...base(), aud: 'elsewhere' }, own.key, { kid: own.kid })), 'token_invalid_audience');
    const { aud: _drop, ...noAud } = base();
    await rejects(svc.verify(await sign(noAud, own.key, { kid: own.kid })), 'token_invalid_audience');
  });
  test('expired → token_expired; not yet valid → token_not_yet_valid', async () => {
    await rejects(svc.verify(await sign({ ...base(), exp: now() - 10 }, own.key, { kid: own.kid })), 'token_expired');
    await rejects(svc.verify(await sign({ ...base(), nbf: now() + 60 }, own.key, { kid: own.kid })), 'token_not_yet_valid');
  });
  test('clock skew tolerance applies to exp and nbf', async () => {
    const { svc: lenient } = await service({ SCOPEGATE_DATA_DIR: dataDir, SCOPEGATE_CLOCK_SKEW_S: '30' });
    assert.equal((await lenient.verify(await sign({ ...base(), exp: now() - 10 }, own.key, { kid: own.kid }))).sub, 'a');
    assert.equal((await lenient.verify(await sign({ ...base(), nbf: now() + 10 }, own.key, { kid: own.kid }))).sub, 'a');
    await rejects(lenient.verify(await sign({ ...base(), exp: now() - 60 }, own.key, { kid: own.kid })), 'token_expired');
  });
  test('unknown kid → token_unknown_key', async () => {
    await rejects(svc.verify(await sign(base(), own.key, { kid: 'no-such-key' })), 'token_unknown_key');
  });
  test('another key under our kid, or a tampered payload → token_invalid_signature', async () => {
    await rejects(svc.verify(await sign(base(), attacker, { kid: own.kid })), 'token_invalid_signature');
    // A key embedded in the header (jwk/jku) is never used to verify.
    const embedded = { ...(await exportJWK((await generateKeyPair('EdDSA')).publicKey)) };
    const withJwk = await new SignJWT(base()).setProtectedHeader({ alg: 'EdDSA', kid: own.kid, jwk: embedded }).sign(attacker);
    await rejects(svc.verify(withJwk), 'token_invalid_signature');
    const [h, , s] = valid.split('.');
    await rejects(svc.verify(`${h}.${b64({ ...base(), scopes: ['*'] })}.${s}`), 'token_invalid_signature');
  });
  test('missing sub / exp, or scopes not a string array → token_invalid_claims', async () => {
    const { sub: _s, ...noSub } = base();
    const { exp: _e, ...noExp } = base();
    await rejects(svc.verify(await sign(noSub, own.key, { kid: own.kid })), 'token_invalid_claims');
    await rejects(svc.verify(await sign(noExp, own.key, { kid: own.kid })), 'token_invalid_claims');
    for (const scopes of ['s', [1], [['s']], null]) {
      await rejects(svc.verify(await sign({ ...base(), scopes }, own.key, { kid: own.kid })), 'token_invalid_claims');
    }
    const { scopes: _sc, ...noScopes } = base();
    await rejects(svc.verify(await sign(noScopes, own.key, { kid: own.kid })), 'token_invalid_claims');
    await rejects(svc.verify(await sign({ ...base(), chain: 7 }, own.key, { kid: own.kid })), 'token_invalid_claims');
  });
  test('OAuth-style scope string is normalised to scopes[]', async () => {
    const { scopes: _sc, ...noScopes } = base();
    const c = await svc.verify(await sign({ ...noScopes, scope: ' sql:orders-db:select  tool:web-search:call ' }, own.key, { kid: own.kid }));
    assert.deepEqual(c.scopes, ['sql:orders-db:select', 'tool:web-search:call']);
    assert.equal(c.scope, undefined);
  });
});

describe('trusted external issuer', async () => {
  const idp = await generateKeyPair('EdDSA', { extractable: true });
  const idpJwk: JWK = { ...(await exportJWK(idp.publicKey)), kid: 'idp-key-1', alg: 'EdDSA', use: 'sig' };
  let jwksRequests = 0;
  const server = http.createServer((req, res) => {
    if (req.url !== '/jwks') {
      res.writeHead(404).end();
      return;
    }
    jwksRequests += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [idpJwk] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  // A port that refuses connections: bind one, note it, release it.
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));

  const { svc } = await service({
    SCOPEGATE_TRUSTED_ISSUERS: JSON.stringify([
      { issuer: 'https://idp.test', jwks_url: `${base}/jwks`, audience: 'agents' },
      { issuer: 'https://missing.test', jwks_url: `${base}/not-here` },
      { issuer: 'https://down.test', jwks_url: `http://127.0.0.1:${closedPort}/jwks` },
    ]),
  });
  const claims = (): JWTPayload => ({ iss: 'https://idp.test', aud: 'agents', sub: 'alice', scope: 'http:crm:GET:/v1/contacts/*', exp: now() + 60 });

  test('accepted with its own audience; scope string normalised', async () => {
    const c = await svc.verify(await sign(claims(), idp.privateKey, { kid: 'idp-key-1' }));
    assert.equal(c.iss, 'https://idp.test');
    assert.deepEqual(c.scopes, ['http:crm:GET:/v1/contacts/*']);
    assert.ok(jwksRequests >= 1, 'keys came from the JWKS endpoint');
  });
  test("the PDP's own audience is not the issuer's audience", async () => {
    await rejects(svc.verify(await sign({ ...claims(), aud: 'scopegate' }, idp.privateKey, { kid: 'idp-key-1' })), 'token_invalid_audience');
  });
  test('an untrusted issuer using the same kid is rejected', async () => {
    const evil = (await generateKeyPair('EdDSA')).privateKey;
    await rejects(svc.verify(await sign({ ...claims(), iss: 'https://evil.test' }, evil, { kid: 'idp-key-1' })), 'token_invalid_issuer');
    await rejects(svc.verify(await sign(claims(), evil, { kid: 'idp-key-1' })), 'token_invalid_signature');
    await rejects(svc.verify(await sign(claims(), idp.privateKey, { kid: 'idp-key-2' })), 'token_unknown_key');
  });
  test('a rejected algorithm never reaches the JWKS endpoint', async () => {
    const before = jwksRequests;
    const input = `${b64({ alg: 'HS256', typ: 'JWT', kid: 'idp-key-1' })}.${b64(claims())}`;
    const token = `${input}.${createHmac('sha256', JSON.stringify(idpJwk)).update(input).digest('base64url')}`;
    await rejects(svc.verify(token), 'token_invalid_algorithm');
    await rejects(svc.verify(`${b64({ alg: 'none' })}.${b64(claims())}.`), 'token_invalid_algorithm');
    assert.equal(jwksRequests, before);
  });
  test('an issuer whose JWKS cannot be fetched → token_keys_unavailable', async () => {
    const aud = 'scopegate';
    await rejects(svc.verify(await sign({ ...claims(), iss: 'https://missing.test', aud }, idp.privateKey, { kid: 'idp-key-1' })), 'token_keys_unavailable');
    await rejects(svc.verify(await sign({ ...claims(), iss: 'https://down.test', aud }, idp.privateKey, { kid: 'idp-key-1' })), 'token_keys_unavailable');
  });
});

describe('verification cache', () => {
  test('a cached token is served from cache, and rejected once its exp passes', async () => {
    const { svc } = await service({ SCOPEGATE_CLOCK_SKEW_S: '0' });
    const { token, claims } = await svc.mint({ sub: 'x', scopes: ['s'], ttl_s: 2 });
    const first = await svc.verify(token);
    // Same frozen object: the second call was a cache hit, not a re-verification.
    assert.equal(await svc.verify(token), first);
    // Wait (bounded) until the wall clock passes exp.
    for (let i = 0; i < 50 && Date.now() < claims.exp! * 1000; i += 1) await new Promise((r) => setTimeout(r, 100));
    await rejects(svc.verify(token), 'token_expired');
  });

  test('logs never contain the token or the private key', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString());
        cb();
      },
    });
    const log = pino({ level: 'trace' }, sink);
    const { svc, dataDir } = await service({}, log);
    const { token } = await svc.mint({ sub: 'x', scopes: ['s'] });
    await svc.verify(token);
    const [h, p] = token.split('.');
    await rejects(svc.verify(`${h}.${p}.AAAA`), 'token_invalid_signature');
    const privateD = (JSON.parse(await fs.readFile(path.join(dataDir, SIGNING_KEY_FILE), 'utf8')) as { keys: { jwk: JWK }[] }).keys[0]!.jwk.d!;
    const all = lines.join('');
    assert.ok(all.includes('token_invalid_signature'), 'the rejection was logged');
    assert.ok(!all.includes(p!), 'no token parts in logs');
    assert.ok(!all.includes(privateD), 'no key material in logs');
  });
});
