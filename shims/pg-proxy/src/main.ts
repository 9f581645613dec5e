/**
 * The pg-proxy process: `tsx shims/pg-proxy/src/main.ts --config pg-proxy.yaml`.
 * Reads its configuration once, listens, and shuts down cleanly on SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import pino from 'pino';
import { PdpClient } from '../../pdp-client/src/index.js';
import { createPgProxy } from './index.js';
import { ConfigError, loadPgProxyConfig } from './proxy-config.js';

const PER_STATEMENT_EVENTS = new Set(['decision', 'login_check', 'statement_refused']);
const logger = pino({ name: 'pg-proxy', redact: ['token', 'password', '*.token', '*.password'] });

async function main(): Promise<void> {
  const cfg = loadPgProxyConfig(process.argv.slice(2), process.env);
  logger.level = cfg.logLevel;
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
    // Per-statement events go to debug: the PDP already logs every decision durably, and a
    // log line per statement is a measurable share of the proxy's CPU (bench/pg-proxy).
    log: (event) => (PER_STATEMENT_EVENTS.has(String(event.event)) ? logger.debug(event) : logger.info(event)),
  });
  const addr = await proxy.listen(cfg.listen.port, cfg.listen.host);
  logger.info({ event: 'listening', ...addr, resource: cfg.resource, tls: Boolean(cfg.tls) }, 'pg-proxy listening');
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
