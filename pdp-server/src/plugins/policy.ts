/**
 * Policy loading: compile the configured Rego folders to WASM at start, recompile and swap on
 * file changes (development), and accept uploaded bundles on `PUT /v1/policies` (admin).
 * A failed compile or load leaves the running policy in place.
 */
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import fp from 'fastify-plugin';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { ErrorBody } from '../contract.js';
import { ScopegateError } from '../errors.js';
import { buildWasmBundle, findOpa } from '../policy/opa-cli.js';
import { PolicyEngine, type ActivePolicy } from '../policy/policy-engine.js';

declare module 'fastify' {
  interface FastifyInstance {
    policy: PolicyEngine;
    /** Recompile the configured policy folders and swap them in. */
    reloadPolicyDirs(): Promise<ActivePolicy>;
  }
}

export interface PolicyPluginOptions {
  config: Readonly<Config>;
  /** The engine the decision service evaluates with; this plugin loads bundles into it. */
  engine: PolicyEngine;
  /** Hook for cluster-wide distribution: called after an uploaded bundle is loaded here. */
  onUpload?: (revision: string, bundle: Buffer) => Promise<void>;
  /** A bundle to start from instead of compiling the folders (e.g. the newest uploaded one). */
  initialBundle?: { revision: string; bundle: Buffer } | undefined;
}

const BundleUploadResponse = Type.Object({ revision: Type.String(), entrypoints: Type.Array(Type.String()) });
const PolicyStatus = Type.Object({
  revision: Type.String(),
  source: Type.String(),
  loaded_at: Type.String(),
  entrypoints: Type.Array(Type.String()),
});

export default fp(
  async function policyPlugin(app: FastifyInstance, opts: PolicyPluginOptions) {
    const { config } = opts;
    const engine = opts.engine;
    app.decorate('policy', engine);
    engine.onSwap((p) => {
      app.metrics?.policyLoaded(p.revision, p.source);
      app.log.info({ revision: p.revision, source: p.source }, 'policy loaded');
    });

    const buildDir = path.join(config.dataDir, 'build');
    let building: Promise<ActivePolicy> | undefined;
    const compileAndLoad = async (): Promise<ActivePolicy> => {
      if (config.policyBundle) return engine.loadBundle(await readFile(config.policyBundle), `bundle:${config.policyBundle}`);
      const opa = await findOpa(config.opaBin);
      await mkdir(buildDir, { recursive: true });
      const outFile = path.join(buildDir, `bundle-${process.pid}-${Date.now()}.tar.gz`);
      try {
        await buildWasmBundle({ opa, dirs: [...config.policyDirs], outFile });
        return await engine.loadBundle(await readFile(outFile), `dir:${config.policyDirs.join(path.delimiter)}`);
      } finally {
        await rm(outFile, { force: true });
      }
    };
    // Serialise rebuilds: a burst of file events yields one build at a time.
    app.decorate('reloadPolicyDirs', () => {
      const run = (building ?? Promise.resolve()).catch(() => undefined).then(compileAndLoad);
      building = run;
      return run;
    });

    if (opts.initialBundle) {
      await engine.loadBundle(opts.initialBundle.bundle, 'upload');
    } else {
      await app.reloadPolicyDirs();
    }

    const watchers: FSWatcher[] = [];
    if (config.policyWatch) {
      let timer: NodeJS.Timeout | undefined;
      const onChange = (_event: string, file: string | Buffer | null) => {
        const name = String(file ?? '');
        if (name && !/\.(rego|json|ya?ml|tar\.gz)$/.test(name)) return;
        // An uploaded bundle is authoritative until the folders change again.
        clearTimeout(timer);
        timer = setTimeout(() => {
          app.reloadPolicyDirs().catch((err: unknown) => {
            app.log.error({ err: errMessage(err) }, 'policy reload failed; keeping the running policy');
          });
        }, 150);
      };
      for (const dir of config.policyBundle ? [path.dirname(config.policyBundle)] : config.policyDirs) {
        try {
          watchers.push(watch(dir, { recursive: true }, onChange));
        } catch (err) {
          app.log.warn({ dir, err: errMessage(err) }, 'cannot watch policy folder');
        }
      }
      app.addHook('onClose', async () => {
        clearTimeout(timer);
      });
    }
    app.addHook('onClose', async () => {
      for (const w of watchers) w.close();
      await building?.catch(() => undefined);
    });

    app.addContentTypeParser(
      ['application/gzip', 'application/x-gzip', 'application/octet-stream', 'application/vnd.openpolicyagent.bundle'],
      { parseAs: 'buffer', bodyLimit: 64 * 1024 * 1024 },
      (_req, body, done) => done(null, body),
    );

    app.put(
      '/v1/policies',
      {
        onRequest: app.requireRole('admin'),
        bodyLimit: 64 * 1024 * 1024,
        schema: {
          tags: ['policy'],
          summary: 'Upload a policy bundle (tar.gz from `opa build -t wasm`) and make it active on every replica',
          consumes: ['application/gzip'],
          response: { 200: BundleUploadResponse, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody },
        },
      },
      async (request) => {
        const body = request.body;
        if (!Buffer.isBuffer(body) || body.length === 0) throw new ScopegateError('bundle_invalid', 'send the bundle as application/gzip');
        const active = await engine.loadBundle(body, 'upload');
        await opts.onUpload?.(active.revision, body);
        return { revision: active.revision, entrypoints: [...active.entrypoints] };
      },
    );

    app.get(
      '/v1/policies',
      {
        onRequest: app.requireRole('admin', 'auditor'),
        schema: {
          tags: ['policy'],
          summary: 'The active policy bundle',
          response: { 200: PolicyStatus, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody },
        },
      },
      async () => {
        const a = engine.active;
        if (!a) throw new ScopegateError('policy_not_loaded');
        return { revision: a.revision, source: a.source, loaded_at: a.loadedAt.toISOString(), entrypoints: [...a.entrypoints] };
      },
    );
  },
  { name: 'scopegate-policy', dependencies: ['scopegate-auth'] },
);

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
