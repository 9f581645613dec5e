/**
 * Message framing for protocol 3.0 (§55.7): a state machine over a byte stream.
 *
 *   awaitingStartup ──(untyped: int32 length, int32 code, …)──▶ typed
 *   typed           ──(Byte1 type, int32 length incl. itself, body)──▶ typed
 *
 * The frontend stream starts in `awaitingStartup` (and returns there after an SSLRequest
 * or GSSENCRequest is answered); the backend stream is always `typed`. A length outside
 * [4, maxLength] is a protocol violation: the framer throws and the connection is cut.
 */

export type FramerState = 'awaitingStartup' | 'typed';

export interface Frame {
  /** Type byte as a one-character string; null for untyped startup-phase messages. */
  type: string | null;
  /** Message body without type byte and length. */
  body: Buffer;
  /** The complete message as received (for forwarding unchanged). */
  raw: Buffer;
}

export class FrameError extends Error {}

export class MessageFramer {
  state: FramerState;
  #buf: Buffer = Buffer.alloc(0);

  constructor(
    initial: FramerState,
    /** Largest accepted message, length field included; adjustable after startup. */
    public maxLength: number,
  ) {
    this.state = initial;
  }

  push(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
  }

  /** Bytes received but not yet framed. */
  get pending(): number {
    return this.#buf.length;
  }

  /** The next complete message, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    const header = this.state === 'typed' ? 5 : 4;
    if (this.#buf.length < header) return undefined;
    const offset = this.state === 'typed' ? 1 : 0;
    const length = this.#buf.readInt32BE(offset);
    // Startup messages are at least 8 bytes (length + code); typed ones at least 4 (the length).
    const min = this.state === 'typed' ? 4 : 8;
    if (length < min || length > this.maxLength) throw new FrameError(`message length ${length} out of bounds`);
    const total = length + offset;
    if (this.#buf.length < total) return undefined;
    const raw = this.#buf.subarray(0, total);
    this.#buf = this.#buf.subarray(total);
    return {
      type: this.state === 'typed' ? String.fromCharCode(raw[0] as number) : null,
      body: raw.subarray(offset + 4),
      raw,
    };
  }

  /** Take any unframed bytes (used when a TLS handshake takes over the socket). */
  drain(): Buffer {
    const b = this.#buf;
    this.#buf = Buffer.alloc(0);
    return b;
  }
}
