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

const EMPTY = Buffer.alloc(0);

/**
 * A frame whose body view is made only when read: most frames are forwarded as they are
 * (`raw`), and a Buffer view costs a typed-array allocation.
 */
class ReceivedFrame implements Frame {
  #body: Buffer | undefined;
  constructor(
    readonly type: string | null,
    readonly raw: Buffer,
    readonly bodyOffset: number,
  ) {}
  get body(): Buffer {
    return (this.#body ??= this.raw.subarray(this.bodyOffset));
  }
}

export class MessageFramer {
  state: FramerState;
  /** Received bytes; those before `#pos` are framed already (a read position instead of a view per frame). */
  #buf: Buffer = EMPTY;
  #pos = 0;

  constructor(
    initial: FramerState,
    /** Largest accepted message, length field included; adjustable after startup. */
    public maxLength: number,
  ) {
    this.state = initial;
  }

  push(chunk: Buffer): void {
    this.#buf = this.#pos === this.#buf.length ? chunk : Buffer.concat([this.#buf.subarray(this.#pos), chunk]);
    this.#pos = 0;
  }

  /** Bytes received but not yet framed. */
  get pending(): number {
    return this.#buf.length - this.#pos;
  }

  /** The next complete message, or undefined when more bytes are needed. */
  next(): Frame | undefined {
    const buf = this.#buf;
    const pos = this.#pos;
    const typed = this.state === 'typed';
    const available = buf.length - pos;
    if (available < (typed ? 5 : 4)) return undefined;
    const offset = typed ? 1 : 0;
    const length = buf.readInt32BE(pos + offset);
    // Startup messages are at least 8 bytes (length + code); typed ones at least 4 (the length).
    if (length < (typed ? 4 : 8) || length > this.maxLength) throw new FrameError(`message length ${length} out of bounds`);
    const total = length + offset;
    if (available < total) return undefined;
    const raw = pos === 0 && total === buf.length ? buf : buf.subarray(pos, pos + total);
    if (pos + total === buf.length) {
      this.#buf = EMPTY;
      this.#pos = 0;
    } else this.#pos = pos + total;
    return new ReceivedFrame(typed ? String.fromCharCode(buf[pos] as number) : null, raw, offset + 4);
  }

  /** Take any unframed bytes (used when a TLS handshake takes over the socket). */
  drain(): Buffer {
    const b = this.#pos === 0 ? this.#buf : this.#buf.subarray(this.#pos);
    this.#buf = EMPTY;
    this.#pos = 0;
    return b;
  }
}
