/**
 * The http-proxy process: `tsx shims/http-proxy/src/main.ts --config proxy.yaml`.
 * Reads its configuration once (file + environment), listens, and closes gracefully on
 * SIGINT/SIGTERM. The only module of the proxy that reads process.env.
 */
import { createHttpProxy } from './proxy-app.js';
import { loadProxyConfig, ProxyConfigError } from './proxy-config.js';
import { RouteConfigError } from './routes.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadProxyConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ProxyConfigError || err instanceof RouteConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let app;
  try {
    app = createHttpProxy({
      ...config.options,
      logger: {
        level: config.logLevel,
        // Tokens and upstream credentials must never reach a log line.
        redact: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie'],
      },
    });
  } catch (err) {
    if (err instanceof RouteConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  await app.listen({ host: config.host, port: config.port });
  const stop = () => {
    app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

void main();
