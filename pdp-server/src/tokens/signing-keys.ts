/**
 * The PDP's own signing keys: generated on first start, persisted in the data folder,
 * loaded on every later start.
 *
 * File `<dataDir>/signing-key.json` (mode 0600):
 *   { "version": 1, "keys": [ { "created_at": "<ISO>", "jwk": { <private JWK with alg> } } ] }
 *
 * It is a list so that a key can be rotated: add a newer entry, keep the older ones until
 * every token they signed has expired (config.tokens.maxTtlS). The newest entry signs; all
 * of them verify and are published in the JWKS. `kid` is always recomputed as the RFC 7638
 * thumbprint, so a hand-edited kid cannot drift from the key it names.
 */
import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { FastifyBaseLogger } from 'fastify';

export const SIGNING_KEY_FILE = 'signing-key.json';

/** Algorithm of keys generated here. Ed25519: small keys, fast, deterministic signatures. */
export const GENERATED_ALG = 'EdDSA';

export interface SigningKey {
  kid: string;
  alg: string;
  createdAt: string;
  privateKey: CryptoKey;
  /** Public JWK as published: kty/crv/x…, kid, alg, use. */
  publicJwk: JWK;
}

export interface SigningKeySet {
  /** The key new tokens are signed with (newest). */
  active: SigningKey;
  /** Every key that verifies, newest first; the active key is the first. */
  all: readonly SigningKey[];
}

interface KeyFileEntry {
  created_at: string;
  jwk: JWK;
}
interface KeyFile {
  version: 1;
  keys: KeyFileEntry[];
}

/** JWK members that carry private key material (RFC 7518 §6). Stripped to publish a key. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const;

/**
 * Load the key file, creating it first if there is none.
 * `allowedAlgs` is config.tokens.algorithms: a key whose alg the PDP would refuse to
 * verify is a configuration error and stops the start.
 */
export async function loadOrCreateSigningKeys(
  dataDir: string,
  allowedAlgs: readonly string[],
  log: FastifyBaseLogger,
): Promise<SigningKeySet> {
  const file = path.join(dataDir, SIGNING_KEY_FILE);
  let raw = await readIfExists(file);
  if (raw === undefined) {
    await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });
    const created = await createKeyFile(file);
    if (created) log.info({ file }, 'generated a new token signing key');
    // Whether we won or lost a race with another process, read what is on disk now, so
    // both processes end up signing with the same key.
    raw = await fs.readFile(file, 'utf8');
  } else {
    await warnIfLoose(file, log);
  }
  const keys = await parseKeyFile(raw, file, allowedAlgs);
  const active = keys[0];
  if (active === undefined) throw new Error(`${file} holds no keys`);
  log.info({ kid: active.kid, alg: active.alg, keys: keys.length }, 'token signing keys loaded');
  return { active, all: keys };
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Write a fresh key without ever exposing a half-written file and without overwriting a
 * key another process published first. The key is written and fsynced to a private temp
 * file, then hard-linked to the final name: link(2) is atomic and fails with EEXIST when
 * the name is taken (rename(2) would silently replace the other process's key, leaving it
 * signing with a key nobody can verify). Returns false when another process won.
 */
async function createKeyFile(file: string): Promise<boolean> {
  const { privateKey } = await generateKeyPair(GENERATED_ALG, { crv: 'Ed25519', extractable: true });
  const jwk = await exportJWK(privateKey);
  const body: KeyFile = {
    version: 1,
    keys: [{ created_at: new Date().toISOString(), jwk: { ...jwk, alg: GENERATED_ALG, use: 'sig' } }],
  };
  const tmp = `${file}.${process.pid}.${randomUUID()}.tmp`;
  const handle = await fs.open(tmp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(body, null, 2)}\n`, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.link(tmp, file);
    await syncDir(path.dirname(file));
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    // Filesystems without hard links: fall back to a no-clobber check + rename. The window
    // between the two is tiny, and only a simultaneous first start on such a filesystem
    // can hit it.
    if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') {
      if ((await readIfExists(file)) !== undefined) return false;
      await fs.rename(tmp, file);
      return true;
    }
    throw err;
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the new directory entry durable; not every platform lets a directory be opened.
  try {
    const h = await fs.open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  } catch {
    /* best effort */
  }
}

async function warnIfLoose(file: string, log: FastifyBaseLogger): Promise<void> {
  const st = await fs.stat(file);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    log.warn({ file, mode: (st.mode & 0o777).toString(8) }, 'token signing key file is readable by other users; chmod 600 it');
  }
}

async function parseKeyFile(raw: string, file: string, allowedAlgs: readonly string[]): Promise<SigningKey[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // Never echo the content: it is private key material.
    throw new Error(`${file} is not valid JSON; restore it from a backup or delete it to generate a new key`);
  }
  const entries = (parsed as Partial<KeyFile> | null)?.keys;
  if (!Array.isArray(entries) || entries.length === 0) throw new Error(`${file} must hold {"version":1,"keys":[…]}`);

  const keys: SigningKey[] = [];
  for (const [i, entry] of entries.entries()) {
    const jwk = (entry as Partial<KeyFileEntry> | null)?.jwk;
    const createdAt = (entry as Partial<KeyFileEntry> | null)?.created_at;
    if (typeof jwk !== 'object' || jwk === null || typeof createdAt !== 'string') {
      throw new Error(`${file}: key ${i} needs created_at and jwk`);
    }
    const alg = jwk.alg;
    if (typeof alg !== 'string' || !allowedAlgs.includes(alg)) {
      throw new Error(`${file}: key ${i} has alg ${String(alg)}, which is not in SCOPEGATE_TOKEN_ALGS (${allowedAlgs.join(',')})`);
    }
    if (jwk.kty === 'oct' || typeof jwk.d !== 'string') throw new Error(`${file}: key ${i} is not an asymmetric private key`);
    const privateKey = await importJWK(jwk, alg);
    if (!('type' in privateKey) || privateKey.type !== 'private') throw new Error(`${file}: key ${i} is not a private key`);
    const kid = await calculateJwkThumbprint(jwk);
    keys.push({ kid, alg, createdAt, privateKey, publicJwk: publicJwkOf(jwk, kid, alg) });
  }
  if (new Set(keys.map((k) => k.kid)).size !== keys.length) throw new Error(`${file} lists the same key twice`);
  // Newest signs. ISO-8601 UTC strings sort chronologically.
  return keys.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
}

function publicJwkOf(jwk: JWK, kid: string, alg: string): JWK {
  const pub: Record<string, unknown> = { ...jwk };
  for (const m of PRIVATE_MEMBERS) delete pub[m];
  delete pub.key_ops;
  delete pub.ext;
  return { ...(pub as JWK), kid, alg, use: 'sig' };
}
