/**
 * The PDP process: validate configuration, build the app, listen, close gracefully.
 * Only this file picks logger options, timeouts and signal handling.
 */
import type { FastifyServerOptions } from 'fastify';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';

/** pino options: tokens, keys and authorization headers never reach a log line. */
export function loggerOptions(config: Readonly<Config>): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    base: { service: 'scopegate-pdp', instance: config.instanceId },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-scopegate-key"]',
        'req.headers.cookie',
        '*.token',
        '*.password',
        '*.key',
        'body.token',
      ],
      censor: '[redacted]',
    },
  };
}

async function main(): Promise<void> {
  let config: Readonly<Config>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`scopegate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const app = await buildApp(config, { logger: loggerOptions(config) });
  app.server.keepAliveTimeout = 65_000;
  app.server.headersTimeout = 66_000;
  app.server.requestTimeout = 120_000;

  for (const [role, file] of Object.entries(app.credentials.generatedFiles)) {
    app.log.info({ role, file }, `generated ${role} key (set SCOPEGATE_${role.toUpperCase()}_KEY to choose your own)`);
  }

  let closing = false;
  const close = (signal: string) => {
    if (closing) return;
    closing = true;
    app.log.info({ signal }, 'closing');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'close failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => close('SIGINT'));
  process.on('SIGTERM', () => close('SIGTERM'));

  const address = await app.listen({ host: config.host, port: config.port });
  app.log.info({ url: address, policy_revision: app.policy.active?.revision }, 'listening');
}

main().catch((err: unknown) => {
  process.stderr.write(`scopegate: failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
