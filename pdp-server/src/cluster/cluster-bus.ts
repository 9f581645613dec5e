/**
 * A small pub/sub bus between PDP replicas over Redis: one subscriber connection, one
 * publisher connection, two events — `revocation` and `policy`.
 *
 * Pub/sub is fire-and-forget: a replica that is disconnected when a message is published never
 * sees it. So the bus tells its users when the subscription is lost and when it is live again
 * (confirmed by Redis), and they fall back to the durable store: poll it while the bus is down,
 * resync from it once the bus is back. Messages are hints for speed; the store is the truth.
 */
import type { Redis } from 'ioredis';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { closeRedis, createRedisConnection } from './redis-connection.js';

export const CLUSTER_EVENTS = ['revocation', 'policy'] as const;
export type ClusterEvent = (typeof CLUSTER_EVENTS)[number];

export type ClusterListener = (data: unknown, from: string) => void;

export interface ClusterBus {
  /** This replica's name; carried in every message so a replica can recognise its own. */
  readonly instanceId: string;
  /** True while the subscription is confirmed live. While false, users poll the store. */
  readonly connected: boolean;
  /** Publish to every replica (this one included). Resolves false when Redis did not take it. */
  publish(event: ClusterEvent, data: unknown): Promise<boolean>;
  on(event: ClusterEvent, fn: ClusterListener): void;
  /**
   * Called with true each time the subscription becomes live (the first time and after every
   * reconnect: resync then), and with false when it is lost (start polling then).
   */
  onConnectionChange(fn: (connected: boolean) => void): void;
  close(): Promise<void>;
}

interface Envelope {
  from: string;
  data: unknown;
}

/** The bus for this config, or undefined without REDIS_URL (embedded mode: store only). */
export function createClusterBus(config: Readonly<Config>, log: FastifyBaseLogger): ClusterBus | undefined {
  if (!config.redisUrl) return undefined;
  return createRedisClusterBus({
    redisUrl: config.redisUrl,
    cluster: config.cluster,
    instanceId: config.instanceId,
    log,
  });
}

export function createRedisClusterBus(opts: {
  redisUrl: string;
  cluster: string;
  instanceId: string;
  log: FastifyBaseLogger;
}): ClusterBus {
  const { cluster, instanceId, log } = opts;
  const channelOf = (e: ClusterEvent) => `${cluster}:bus:${e}`;
  const eventOf = new Map<string, ClusterEvent>(CLUSTER_EVENTS.map((e) => [channelOf(e), e]));
  const listeners = new Map<ClusterEvent, ClusterListener[]>(CLUSTER_EVENTS.map((e) => [e, []]));
  const stateListeners: Array<(up: boolean) => void> = [];

  const pub: Redis = createRedisConnection(opts.redisUrl, 'publisher', log);
  const sub: Redis = createRedisConnection(opts.redisUrl, 'subscriber', log);
  let connected = false;
  let closed = false;

  const setConnected = (up: boolean) => {
    if (up === connected || closed) return;
    connected = up;
    log.info({ connected: up }, up ? 'cluster bus subscribed' : 'cluster bus lost; polling the store');
    for (const fn of stateListeners) {
      try {
        fn(up);
      } catch (err) {
        log.error({ err: (err as Error).message }, 'cluster bus state listener failed');
      }
    }
  };

  sub.on('ready', () => {
    sub.subscribe(...eventOf.keys()).then(
      () => setConnected(true),
      // A failed SUBSCRIBE leaves us polling; the next reconnect tries again.
      (err: Error) => log.warn({ err: err.message }, 'cluster bus subscribe failed'),
    );
  });
  sub.on('close', () => setConnected(false));
  sub.on('message', (channel: string, message: string) => {
    const event = eventOf.get(channel);
    if (!event) return;
    let env: Envelope;
    try {
      env = JSON.parse(message) as Envelope;
      if (typeof env?.from !== 'string') throw new Error('no sender');
    } catch {
      log.warn({ channel }, 'cluster bus: ignoring malformed message');
      return;
    }
    for (const fn of listeners.get(event) ?? []) {
      try {
        fn(env.data, env.from);
      } catch (err) {
        log.error({ event, err: (err as Error).message }, 'cluster bus listener failed');
      }
    }
  });

  return {
    instanceId,
    get connected() {
      return connected;
    },
    async publish(event, data) {
      const env: Envelope = { from: instanceId, data };
      try {
        await pub.publish(channelOf(event), JSON.stringify(env));
        return true;
      } catch (err) {
        log.warn({ event, err: (err as Error).message }, 'cluster bus publish failed; replicas will pick it up from the store');
        return false;
      }
    },
    on(event, fn) {
      listeners.get(event)?.push(fn);
    },
    onConnectionChange(fn) {
      stateListeners.push(fn);
    },
    async close() {
      closed = true;
      connected = false;
      await Promise.all([closeRedis(pub), closeRedis(sub)]);
    },
  };
}
