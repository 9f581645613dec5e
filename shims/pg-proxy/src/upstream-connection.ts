/**
 * Opening an upstream connection with the proxy's own credential: startup, then whichever
 * authentication the server asks for (trust, cleartext, md5, SCRAM-SHA-256), then the
 * parameter statuses and backend key, up to the first ReadyForQuery.
 *
 * SCRAM client steps come from node-postgres (`pg/lib/crypto/sasl`), which already handles
 * SASLprep, nonce checks and server-signature verification.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import { serialize } from 'pg-protocol';
import { AUTH, BACKEND, ERROR_FIELDS } from './message-codes.js';
import { BodyReader, decodeNotice, encodeStartup } from './wire-codec.js';
import { MessageFramer, type Frame } from './wire-frames.js';

interface ScramSession {
  mechanism: string;
  response: string;
  message: string;
}
interface ScramModule {
  startSession(mechanisms: string[], stream?: unknown): ScramSession;
  continueSession(session: ScramSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(session: ScramSession, serverData: string): void;
}
interface CryptoUtils {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
}
const require = createRequire(import.meta.url);
const sasl = require('pg/lib/crypto/sasl') as ScramModule;
const cryptoUtils = require('pg/lib/crypto/utils') as CryptoUtils;

export interface UpstreamOptions {
  host: string;
  port: number;
  database: string;
  user: string;
  password?: string | undefined;
  /** Startup parameters beyond user/database (already filtered by the allow-list). */
  params?: Record<string, string>;
  connectTimeoutMs?: number;
  maxMessageBytes: number;
}

export interface UpstreamConnection {
  /** Read through `onread`: it emits no 'data' events; bytes arrive through `receive`. */
  socket: net.Socket;
  framer: MessageFramer;
  /**
   * Hand every chunk received from now on to `handler` (each a Buffer of its own that the
   * handler may keep). Until it is called, chunks go into `framer`.
   */
  receive(handler: (chunk: Buffer) => void): void;
  /** ParameterStatus messages as received, to replay to the client. */
  parameterStatuses: Frame[];
  pid: number;
  secret: number;
}

export class UpstreamError extends Error {
  constructor(
    message: string,
    readonly sqlstate?: string,
  ) {
    super(message);
  }
}

/**
 * The buffer every upstream socket reads into (`onread` of net.connect): reads then reach
 * a callback directly, without the socket's Readable stream and 'data' events (a few µs
 * less CPU per read, which is per statement for small results).
 * The callback copies what arrived before it returns (the next read overwrites the buffer).
 * One buffer serves all sockets: a read and its callback run together on the one JS thread.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/**
 * Where to connect for an upstream `host` and `port`, the way libpq reads them: a host that
 * starts with `/` is the folder of Postgres's Unix socket (`<folder>/.s.PGSQL.<port>`), as
 * for a shim running beside its database; anything else is a TCP host name or address.
 */
export function upstreamAddress(host: string, port: number): { path: string } | { host: string; port: number } {
  return host.startsWith('/') ? { path: `${host.replace(/\/+$/, '')}/.s.PGSQL.${port}` } : { host, port };
}

export async function connectUpstream(opts: UpstreamOptions): Promise<UpstreamConnection> {
  const framer = new MessageFramer('typed', opts.maxMessageBytes);
  let handler = (chunk: Buffer): void => framer.push(chunk);
  const socket = net.connect({
    ...upstreamAddress(opts.host, opts.port),
    onread: {
      buffer: READ_BUFFER,
      callback: (nread: number, buf: Uint8Array): boolean => {
        const chunk = Buffer.allocUnsafe(nread);
        chunk.set(buf.subarray(0, nread));
        handler(chunk);
        // Back-pressure pauses the socket (socket.pause() stops reading under onread too).
        return true;
      },
    },
  });
  socket.setNoDelay(true);
  const receive = (h: (chunk: Buffer) => void): void => {
    handler = h;
  };
  const timeout = setTimeout(() => socket.destroy(new UpstreamError('upstream connect timed out')), opts.connectTimeoutMs ?? 10_000);
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const frames = frameIterator(socket, framer, receive);
    socket.write(encodeStartup({ user: opts.user, database: opts.database, ...opts.params }));
    const parameterStatuses: Frame[] = [];
    let pid = 0;
    let secret = 0;
    let scram: ScramSession | undefined;
    for (;;) {
      const f = await frames.next();
      if (f.type === BACKEND.errorResponse) {
        const fields = decodeNotice(f.body);
        const code = fields.find(([c]) => c === ERROR_FIELDS.code)?.[1];
        throw new UpstreamError(`upstream refused the connection (${code ?? 'no code'})`, code);
      }
      if (f.type === BACKEND.authentication) {
        const r = new BodyReader(f.body);
        const kind = r.int32();
        if (kind === AUTH.ok) continue;
        if (opts.password === undefined || opts.password === '') throw new UpstreamError('upstream asks for a password and none is configured');
        if (kind === AUTH.cleartextPassword) socket.write(serialize.password(opts.password));
        else if (kind === AUTH.md5Password) socket.write(serialize.password(await cryptoUtils.postgresMd5PasswordHash(opts.user, opts.password, r.bytes(4))));
        else if (kind === AUTH.sasl) {
          const mechanisms: string[] = [];
          for (let i = 0; i < 16; i++) {
            const m = r.cstring();
            if (m === '') break;
            mechanisms.push(m);
          }
          // No channel binding: the upstream leg is plaintext TCP (see README).
          scram = sasl.startSession(mechanisms);
          socket.write(serialize.sendSASLInitialResponseMessage(scram.mechanism, scram.response));
        } else if (kind === AUTH.saslContinue && scram) {
          await sasl.continueSession(scram, opts.password, r.rest().toString('utf8'));
          socket.write(serialize.sendSCRAMClientFinalMessage(scram.response));
        } else if (kind === AUTH.saslFinal && scram) {
          sasl.finalizeSession(scram, r.rest().toString('utf8'));
        } else throw new UpstreamError(`unsupported upstream authentication method ${kind}`);
        continue;
      }
      if (f.type === BACKEND.parameterStatus) parameterStatuses.push(f);
      else if (f.type === BACKEND.backendKeyData) {
        const r = new BodyReader(f.body);
        pid = r.int32();
        secret = r.int32();
      } else if (f.type === BACKEND.readyForQuery) {
        frames.release();
        return { socket, framer, receive, parameterStatuses, pid, secret };
      }
      // NoticeResponse, NegotiateProtocolVersion: nothing to do during startup.
    }
  } catch (err) {
    socket.destroy();
    throw err instanceof UpstreamError ? err : new UpstreamError(`upstream connection failed: ${(err as Error).message}`);
  } finally {
    clearTimeout(timeout);
  }
}

/** Pull frames from a socket during the handshake; `release` detaches so the session can take over. */
function frameIterator(socket: net.Socket, framer: MessageFramer, receive: (h: (chunk: Buffer) => void) => void): { next(): Promise<Frame>; release(): void } {
  let waiter: { resolve: () => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  const onData = (chunk: Buffer): void => {
    framer.push(chunk);
    waiter?.resolve();
  };
  const onEnd = (): void => {
    failure = new UpstreamError('upstream closed the connection during startup');
    waiter?.reject(failure);
  };
  const onError = (e: Error): void => {
    failure = e;
    waiter?.reject(e);
  };
  receive(onData);
  socket.on('close', onEnd);
  socket.on('error', onError);
  return {
    async next(): Promise<Frame> {
      for (;;) {
        const f = framer.next();
        if (f) return f;
        if (failure) throw failure;
        await new Promise<void>((resolve, reject) => (waiter = { resolve, reject }));
        waiter = undefined;
      }
    },
    release(): void {
      socket.off('close', onEnd);
      socket.off('error', onError);
      // Read nothing more until the session attaches its own handler (whatever came already waits in the framer).
      socket.pause();
      receive((chunk) => framer.push(chunk));
    },
  };
}
