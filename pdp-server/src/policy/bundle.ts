/**
 * Reading OPA bundles (tar.gz as written by `opa build -t wasm`): the compiled policy.wasm,
 * the merged data.json and the .manifest with its revision.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import { ScopegateError } from '../errors.js';

export interface PolicyBundle {
  wasm: Buffer;
  data: Record<string, unknown>;
  revision: string;
  /** Entrypoint names recorded in the manifest's wasm section, when present. */
  manifestEntrypoints: string[];
}

/** Bundles larger than this (compressed or expanded) are refused. */
const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;

export async function readBundle(tarGz: Buffer): Promise<PolicyBundle> {
  if (tarGz.length > MAX_BUNDLE_BYTES) throw new ScopegateError('bundle_invalid', 'bundle is too large');
  const files = new Map<string, Buffer>();
  const extract = tar.extract();
  let total = 0;
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: unknown) => {
        const c = chunk as Buffer;
        total += c.length;
        if (total > MAX_BUNDLE_BYTES) {
          reject(new ScopegateError('bundle_invalid', 'bundle expands beyond the size limit'));
          stream.destroy();
          return;
        }
        chunks.push(c);
      });
      stream.on('end', () => {
        if (header.type === 'file') files.set(normalise(header.name), Buffer.concat(chunks));
        next();
      });
      stream.on('error', reject);
    });
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  const gunzip = createGunzip();
  gunzip.on('error', (err) => extract.destroy(err));
  Readable.from([tarGz]).pipe(gunzip).pipe(extract);
  try {
    await done;
  } catch (err) {
    if (err instanceof ScopegateError) throw err;
    throw new ScopegateError('bundle_invalid', `bundle is not a readable tar.gz: ${(err as Error).message}`);
  }

  const wasm = files.get('policy.wasm');
  if (!wasm) throw new ScopegateError('bundle_invalid', 'bundle has no policy.wasm (build it with `opa build -t wasm`)');
  let data: Record<string, unknown> = {};
  const dataFile = files.get('data.json');
  if (dataFile) {
    try {
      const parsed: unknown = JSON.parse(dataFile.toString('utf8'));
      if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) data = parsed as Record<string, unknown>;
      else throw new Error('not an object');
    } catch (err) {
      throw new ScopegateError('bundle_invalid', `data.json is not a JSON object: ${(err as Error).message}`);
    }
  }
  let revision = '';
  let manifestEntrypoints: string[] = [];
  const manifest = files.get('.manifest');
  if (manifest) {
    try {
      const m = JSON.parse(manifest.toString('utf8')) as { revision?: unknown; wasm?: { entrypoint?: unknown }[] };
      if (typeof m.revision === 'string') revision = m.revision;
      manifestEntrypoints = (m.wasm ?? []).map((w) => w.entrypoint).filter((e): e is string => typeof e === 'string');
    } catch {
      throw new ScopegateError('bundle_invalid', '.manifest is not valid JSON');
    }
  }
  if (!revision) revision = contentRevision(wasm, dataFile ?? Buffer.alloc(0));
  return { wasm, data, revision, manifestEntrypoints };
}

/** A revision derived from the bundle's content, for bundles built without `--revision`. */
export function contentRevision(wasm: Buffer, data: Buffer): string {
  return 'sha256:' + createHash('sha256').update(wasm).update(data).digest('hex').slice(0, 16);
}

function normalise(name: string): string {
  return name.replace(/^\.?\/+/, '');
}
