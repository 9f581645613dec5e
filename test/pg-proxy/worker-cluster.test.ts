/**
 * The pg-proxy as a cluster of worker processes (`workers: 2`, the real main.ts): sessions
 * are served by both workers, and a CancelRequest cancels the right query whichever worker
 * the cancel connection lands on — its own (local) or the other one (forwarded via the primary).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { REPO_ROOT } from '../../pdp-server/src/config.js';
import { sendCancel } from './harness.js';
import { newProcessId, workerOfProcessId } from '../../shims/pg-proxy/src/worker-cluster.js';
import { PG, startHarness, type Harness } from './harness.js';

describe('pg-proxy worker process ids', () => {
  it('carry the worker index and stay positive int32', () => {
    for (const index of [0, 1, 5, 63]) {
      for (let i = 0; i < 50; i++) {
        const pid = newProcessId(index);
        assert.ok(pid > 0 && pid <= 0x7fffffff, String(pid));
        assert.equal(workerOfProcessId(pid), index);
      }
    }
    assert.throws(() => newProcessId(64), RangeError);
  });
});

async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  srv.close();
  return port;
}


function throwawayConnection(port: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.end());
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
}

describe('pg-proxy with workers: 2', () => {
  let h: Harness;
  let child: ChildProcess;
  let port: number;
  const events: Array<Record<string, unknown>> = [];
  const waitFor = async (pred: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 300 && !pred(); i++) await sleep(50);
    assert.ok(pred(), `timed out waiting for ${what}; events: ${JSON.stringify(events.slice(-10))}`);
  };

  before(async () => {
    h = await startHarness();
    port = await freePort();
    child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'shims/pg-proxy/src/main.ts')], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        SCOPEGATE_PG_LISTEN_PORT: String(port),
        SCOPEGATE_PG_UPSTREAM_HOST: PG.host,
        SCOPEGATE_PG_UPSTREAM_PORT: String(PG.port),
        SCOPEGATE_PG_UPSTREAM_DATABASE: h.db,
        SCOPEGATE_PG_UPSTREAM_USER: PG.user,
        SCOPEGATE_PG_RESOURCE: 'orders-db',
        SCOPEGATE_PDP_URL: h.pdp.url,
        SCOPEGATE_SHIM_KEY: h.pdp.shimKey,
        SCOPEGATE_PG_WORKERS: '2',
      },
    });
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        try {
          events.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not a log line
        }
      }
    });
    await waitFor(() => events.filter((e) => e.event === 'listening').length === 2, 'both workers to listen');
  });

  after(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await Promise.race([once(child, 'exit'), sleep(10_000)]);
    }
    await h?.close();
  });

  it('cancels a long query (a pg_sleep stand-in) from a second connection, routed locally and across workers', async () => {
    const token = await h.token(['sql:orders-db:select:public.*']);
    const routed = () => new Set(events.filter((e) => e.event === 'cancel_request' && e.routed !== 'received').map((e) => e.routed));
    const owners = new Set<number>();
    for (let attempt = 0; attempt < 12 && (attempt < 4 || routed().size < 2); attempt++) {
      const c = new pg.Client({ host: '127.0.0.1', port, user: 'agent', database: 'x', password: token });
      c.on('error', () => undefined);
      await c.connect();
      try {
        const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
        owners.add(workerOfProcessId(processID));
        // pg_sleep is a dangerous function for the default policy; this runs as long.
        const long = c.query('select count(*) from generate_series(1, 2000000000)').then(
          () => 'finished',
          (e: { code?: string }) => e.code,
        );
        // The query must have reached Postgres before the cancel does.
        await sleep(300);
        // The primary hands connections to the workers in turn: on odd attempts a throwaway
        // connection in between makes the cancel land on the other worker than before.
        if (attempt % 2 === 1) await throwawayConnection(port);
        const before = events.filter((e) => e.event === 'cancel_request').length;
        await sendCancel(port, processID, secretKey);
        assert.equal(await long, '57014', `attempt ${attempt}: the query was not cancelled`);
        await waitFor(() => events.filter((e) => e.event === 'cancel_request').length > before, 'the cancel event');
      } finally {
        await c.end().catch(() => undefined);
      }
    }
    assert.deepEqual([...owners].sort(), [0, 1], 'sessions should be served by both workers');
    assert.deepEqual([...routed()].sort(), ['forwarded', 'local'], 'both routings should have been exercised');
    // A forwarded cancel is received by the owning worker, which found the session.
    assert.ok(events.some((e) => e.event === 'cancel_request' && e.routed === 'received'));
    assert.ok(!events.some((e) => e.event === 'cancel_request' && e.routed === 'unknown'));
  });
});
