/**
 * Redis connections for the decision path. The one rule: a Redis that is down or slow must
 * never stall a decision. Commands fail at once while disconnected (no offline queue), time out
 * quickly while connected, and ioredis keeps reconnecting in the background on its own.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';

/** How long a cache command may take before it counts as a miss. */
export const REDIS_COMMAND_TIMEOUT_MS = 250;
/** Ceiling on the reconnect back-off, so a returning Redis is picked up within a second. */
export const REDIS_RECONNECT_MAX_MS = 500;

export type RedisRole = 'cache' | 'publisher' | 'subscriber';

export function redisOptions(role: RedisRole): RedisOptions {
  return {
    // Nothing waits for a connection: commands fail at once while Redis is away.
    enableOfflineQueue: false,
    // commandTimeout would break a subscriber's long-lived subscription, so only the others get it.
    ...(role === 'subscriber' ? {} : { commandTimeout: REDIS_COMMAND_TIMEOUT_MS }),
    maxRetriesPerRequest: role === 'subscriber' ? null : 0,
    connectTimeout: 2_000,
    retryStrategy: (attempt: number) => Math.min(50 * attempt, REDIS_RECONNECT_MAX_MS),
    // The cluster bus subscribes itself on every 'ready', so it knows when the subscription is
    // confirmed (and only then resyncs from the store); ioredis's own resubscribe would race that.
    autoResubscribe: false,
    lazyConnect: false,
    connectionName: `scopegate-${role}`,
  };
}

/** A connection with the options above; errors are logged (once per outage), never thrown. */
export function createRedisConnection(url: string, role: RedisRole, log: FastifyBaseLogger): Redis {
  const redis = new Redis(url, redisOptions(role));
  let down = false;
  redis.on('error', (err: Error) => {
    if (!down) log.warn({ role, err: err.message }, 'redis connection error');
    down = true;
  });
  redis.on('ready', () => {
    if (down) log.info({ role }, 'redis connection restored');
    down = false;
  });
  return redis;
}

/** Close a connection without waiting on a Redis that is not there. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  if (redis.status === 'ready') {
    await redis.quit().catch(() => redis.disconnect());
  } else {
    redis.disconnect();
  }
}
