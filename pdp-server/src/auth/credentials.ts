/**
 * Management credentials: one key per role. Keys come from config; in embedded mode a
 * missing key is generated once into <dataDir>/keys/<role>.key (mode 0600) and reused.
 */
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';

export const ROLES = ['admin', 'shim', 'auditor', 'approver'] as const;
export type Role = (typeof ROLES)[number];

export interface Principal {
  role: Role;
  /** Who holds the credential; approvals record it and refuse the requesting subject. */
  name: string;
}

export interface Credentials {
  /** Which role a presented key belongs to; undefined when it matches none. Constant time per role. */
  identify(presented: string): Principal | undefined;
  /** Where generated keys were written (for the start-up message); empty when all came from config. */
  generatedFiles: Partial<Record<Role, string>>;
  /** The key of a role (for tests and the embedded demo). */
  key(role: Role): string;
}

export async function loadCredentials(config: Readonly<Config>): Promise<Credentials> {
  const keys = {} as Record<Role, string>;
  const generatedFiles: Partial<Record<Role, string>> = {};
  for (const role of ROLES) {
    const configured = config.keys[role];
    if (configured) {
      keys[role] = configured;
      continue;
    }
    const file = path.join(config.dataDir, 'keys', `${role}.key`);
    keys[role] = await readOrCreateKey(file);
    generatedFiles[role] = file;
  }
  const digests: { principal: Principal; digest: Buffer }[] = [
    ...ROLES.map((role) => ({ principal: { role, name: role }, digest: sha256(keys[role]) })),
    ...config.keys.approvers.map((a) => ({ principal: { role: 'approver' as const, name: a.name }, digest: sha256(a.key) })),
  ];
  return {
    identify(presented) {
      const d = sha256(presented);
      let found: Principal | undefined;
      // Compare against every key, even after a match, so timing does not tell which matched.
      for (const entry of digests) if (timingSafeEqual(d, entry.digest) && !found) found = entry.principal;
      return found;
    },
    generatedFiles,
    key: (role) => keys[role],
  };
}

async function readOrCreateKey(file: string): Promise<string> {
  try {
    const k = (await readFile(file, 'utf8')).trim();
    if (k.length >= 16) return k;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const key = `sg_${randomBytes(24).toString('base64url')}`;
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, key + '\n', { mode: 0o600, flag: 'wx' });
  // If another process created the file meanwhile, keep theirs: rename would replace it,
  // so check first and prefer what is already there.
  try {
    const existing = (await readFile(file, 'utf8')).trim();
    if (existing.length >= 16) return existing;
  } catch {
    /* not there yet */
  }
  await rename(tmp, file);
  return (await readFile(file, 'utf8')).trim();
}

function sha256(s: string): Buffer {
  return hash('sha256', s, 'buffer');
}

/** The credential a request presents: `Authorization: Bearer <key>` or `x-scopegate-key`. */
export function presentedKey(headers: Record<string, string | string[] | undefined>, preferHeader = false): string | undefined {
  const x = headers['x-scopegate-key'];
  const fromX = typeof x === 'string' && x ? x : undefined;
  if (preferHeader && fromX) return fromX;
  const auth = headers.authorization;
  if (typeof auth === 'string') {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m?.[1]) return m[1];
  }
  return fromX;
}
