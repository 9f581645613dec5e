/**
 * pg-proxy as a library: `createPgProxy(options)` → { listen, close, address }.
 * The process entry (config file + env) is main.ts; tests embed this directly.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createColumnCatalog, type ColumnCatalog } from './column-catalog.js';
import { ProxySession, type Decider } from './proxy-session.js';
import { loadSqlParser } from './sql-summary.js';
import { SummaryCache } from './summary-cache.js';

export type { Decider } from './proxy-session.js';
export { isLoopbackAddress, plaintextLoginAllowed } from './proxy-session.js';

export interface PgProxyOptions {
  /** Resource name the PDP decides on, e.g. `orders-db`. */
  resource: string;
  upstream: { host: string; port: number; database: string; user: string; password?: string | undefined };
  decider: Decider;
  /**
   * Hold a statement that needs approval for up to this many seconds, long-polling the PDP
   * (needs `decider.waitApproval`), then decide it again. Default 0: fail at once with an
   * error carrying the approval id, so the agent can retry once it is approved.
   */
  approvalWaitS?: number;
  /** PEM certificate and key; without them SSLRequest is answered `N`. */
  tls?: { cert: string | Buffer; key: string | Buffer } | undefined;
  /** Accept the token over plaintext from non-loopback clients. Default false. */
  allowPlaintextNonLoopback?: boolean;
  /** Largest frontend message after startup. Default 64 MiB. */
  maxMessageBytes?: number;
  /** Clients must finish startup and authentication within this. Default 10 s. */
  startupTimeoutMs?: number;
  /** Most concurrent client connections. Default 1000. */
  maxConnections?: number;
  /** Structured events (never tokens or row data). Default: silent. */
  log?: (event: Record<string, unknown>) => void;
  /**
   * Pass an event per statement decided (`decision`) to `log`. Default true; turn it off when
   * they are dropped anyway (the PDP logs every decision, cached reuses included), since
   * building them costs CPU on every statement.
   */
  logDecisions?: boolean;
  /**
   * Statement summaries kept for reuse by texts that differ only in constants (see
   * summary-cache.ts). Default 5000 entries; 0 turns the cache off.
   */
  summaryCacheSize?: number;
  /** This process's index among the proxy's workers (worker-cluster.ts). Default 0. */
  workerIndex?: number;
  /** Multi-process only: hand a CancelRequest for another worker's key to that worker. */
  forwardCancel?: ((pid: number, secret: number) => void) | undefined;
  /** Column-name lookups; default: a small pool on the upstream with the proxy's credential. */
  catalog?: ColumnCatalog;
}

export interface PgProxy {
  listen(port?: number, host?: string): Promise<{ host: string; port: number }>;
  address(): { host: string; port: number } | undefined;
  /** Cancel the running query of this process's session with this key, if any (a forwarded CancelRequest). */
  cancel(pid: number, secret: number): boolean;
  close(): Promise<void>;
}

export function createPgProxy(options: PgProxyOptions): PgProxy {
  const catalog = options.catalog ?? createColumnCatalog(options.upstream);
  const cancelKeys = new Map<string, ProxySession>();
  const sessions = new Set<ProxySession>();
  const summaries = new SummaryCache(options.summaryCacheSize ?? 5000);
  const log = options.log ?? (() => undefined);
  const secure = options.tls ? tls.createSecureContext({ cert: options.tls.cert, key: options.tls.key }) : undefined;
  const server = net.createServer((socket) => {
    if (sessions.size >= (options.maxConnections ?? 1000)) {
      socket.destroy();
      return;
    }
    const session = new ProxySession(socket, {
      resource: options.resource,
      upstream: options.upstream,
      tls: secure,
      allowPlaintextNonLoopback: options.allowPlaintextNonLoopback ?? false,
      maxMessageBytes: options.maxMessageBytes ?? 64 * 1024 * 1024,
      startupTimeoutMs: options.startupTimeoutMs ?? 10_000,
      decider: options.decider,
      approvalWaitS: options.approvalWaitS ?? 0,
      catalog,
      summaries,
      cancelKeys,
      workerIndex: options.workerIndex ?? 0,
      forwardCancel: options.forwardCancel,
      log,
      logDecisions: options.logDecisions ?? true,
    });
    sessions.add(session);
    socket.once('close', () => sessions.delete(session));
  });
  server.on('error', (err) => log({ event: 'listener_error', error: err.message }));
  let addr: { host: string; port: number } | undefined;
  return {
    async listen(port = 6432, host = '127.0.0.1') {
      await loadSqlParser();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const a = server.address() as net.AddressInfo;
      addr = { host: a.address, port: a.port };
      return addr;
    },
    address: () => addr,
    cancel(pid, secret) {
      const owner = cancelKeys.get(`${pid}:${secret}`);
      owner?.cancelUpstream();
      log({ event: 'cancel_request', routed: owner ? 'received' : 'unknown' });
      return owner !== undefined;
    },
    async close() {
      for (const s of sessions) s.close('proxy shutting down');
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await catalog.close();
    },
  };
}
