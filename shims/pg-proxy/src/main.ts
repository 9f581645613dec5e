/**
 * The pg-proxy process: `tsx shims/pg-proxy/src/main.ts --config pg-proxy.yaml`.
 * Reads its configuration once, listens, and shuts down cleanly on SIGINT/SIGTERM.
 * With `workers` > 1 this process is the cluster primary: it forks that many workers, which
 * share the listening socket, and routes CancelRequests between them (worker-cluster.ts).
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { PdpClient } from '../../pdp-client/src/index.js';
import { createPgProxy } from './index.js';
import { ConfigError, loadPgProxyConfig, WORKER_INDEX_ENV, type PgProxyConfig } from './proxy-config.js';
import { isCancelMessage, runPrimary, type CancelMessage } from './worker-cluster.js';

const PER_STATEMENT_EVENTS = new Set(['decision', 'login_check', 'statement_refused']);
const logger = pino({ name: 'pg-proxy', redact: ['token', 'password', '*.token', '*.password'] });

async function main(): Promise<void> {
  const cfg = loadPgProxyConfig(process.argv.slice(2), process.env);
  logger.level = cfg.logLevel;
  if (cfg.workers > 1 && cluster.isPrimary) return startPrimary(cfg);
  return startWorker(cfg);
}

function startPrimary(cfg: Readonly<PgProxyConfig>): void {
  const log = logger.child({ role: 'primary' });
  const primary = runPrimary({ workers: cfg.workers, indexEnv: WORKER_INDEX_ENV, log: (event) => log.info(event) });
  log.info({ event: 'cluster_started', workers: cfg.workers, ...cfg.listen }, 'pg-proxy primary started');
  const stop = async (): Promise<void> => {
    await primary.stop();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

async function startWorker(cfg: Readonly<PgProxyConfig>): Promise<void> {
  const clustered = cluster.isWorker;
  const log = clustered ? logger.child({ worker: cfg.workerIndex }) : logger;
  const pdp = new PdpClient({ url: cfg.pdp.url, key: cfg.pdp.key, shim: 'pg-proxy', timeoutMs: cfg.pdp.timeoutMs });
  const proxy = createPgProxy({
    resource: cfg.resource,
    upstream: cfg.upstream,
    decider: pdp,
    tls: cfg.tls ? { cert: readFileSync(cfg.tls.certFile), key: readFileSync(cfg.tls.keyFile) } : undefined,
    allowPlaintextNonLoopback: cfg.allowPlaintextNonLoopback,
    approvalWaitS: cfg.approvalWaitS,
    maxMessageBytes: cfg.maxMessageBytes,
    startupTimeoutMs: cfg.startupTimeoutMs,
    summaryCacheSize: cfg.summaryCacheSize,
    workerIndex: clustered ? cfg.workerIndex : 0,
    forwardCancel: clustered ? (pid, secret) => void process.send?.({ type: 'scopegate:pg-cancel', pid, secret } satisfies CancelMessage) : undefined,
    // Per-statement events go to debug: the PDP already logs every decision durably, and a
    // log line per statement is a measurable share of the proxy's CPU (bench/pg-proxy).
    log: (event) => (PER_STATEMENT_EVENTS.has(String(event.event)) ? log.debug(event) : log.info(event)),
    // Decision events go to debug only: not even built unless debug is on.
    logDecisions: log.isLevelEnabled('debug'),
  });
  if (clustered) {
    process.on('message', (m: unknown) => {
      if (isCancelMessage(m)) proxy.cancel(m.pid, m.secret);
    });
  }
  const addr = await proxy.listen(cfg.listen.port, cfg.listen.host);
  log.info({ event: 'listening', ...addr, resource: cfg.resource, tls: Boolean(cfg.tls) }, 'pg-proxy listening');
  const stop = async (): Promise<void> => {
    await proxy.close();
    await pdp.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) logger.error({ problems: err.problems }, 'invalid configuration');
  else logger.error({ error: (err as Error).message }, 'pg-proxy failed to start');
  process.exit(1);
});
