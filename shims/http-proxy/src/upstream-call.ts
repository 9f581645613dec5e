/**
 * One upstream request made with undici's low-level `dispatch`, so the answer can be
 * handed to the client without the stream machinery of `undici.request` (a Readable per
 * answer, async-resource bookkeeping, then a pipe into the response): the proxy's hot path
 * is a few callbacks per request.
 *
 * `start()` resolves once the status and headers are in (or rejects when the upstream
 * cannot be reached or times out). Body bytes that arrive before a consumer is attached —
 * usually a small answer's whole body, which comes in the same read as its headers — are
 * kept, so `attach` can tell the consumer that the answer is already complete and the proxy
 * can send it in one write.
 */
import type { Dispatcher } from 'undici';
import type { IncomingHttpHeaders } from 'node:http';

export interface UpstreamHead {
  statusCode: number;
  headers: IncomingHttpHeaders;
}

/** What consumes the body: bytes, the end, or a failure after the headers. */
export interface BodySink {
  /** Return false to pause the upstream until `resume()` is called. */
  data(chunk: Buffer): boolean;
  end(): void;
  error(err: Error): void;
}

/** Early bytes kept before the upstream is paused (a consumer is normally attached within a tick). */
const EARLY_LIMIT = 64 * 1024;

export class UpstreamCall implements Dispatcher.DispatchHandler {
  #controller: Dispatcher.DispatchController | undefined;
  #abortReason: Error | undefined;
  #head: UpstreamHead | undefined;
  #resolve!: (head: UpstreamHead) => void;
  #reject!: (err: Error) => void;
  readonly #headReady: Promise<UpstreamHead>;
  /** Bytes that came before a sink was attached. */
  #early: Buffer[] = [];
  #earlyBytes = 0;
  #ended = false;
  #failed: Error | undefined;
  #sink: BodySink | undefined;

  constructor() {
    this.#headReady = new Promise<UpstreamHead>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  /** Dispatch on `dispatcher`; resolves with the status and headers. */
  start(dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): Promise<UpstreamHead> {
    dispatcher.dispatch(options, this);
    return this.#headReady;
  }

  /** Bytes already received before `attach` (only meaningful before attaching). */
  get bufferedBytes(): number {
    return this.#earlyBytes;
  }

  /** True when the whole body has arrived and nothing is attached yet: `takeBody` gives it all. */
  get complete(): boolean {
    return this.#ended && this.#sink === undefined && this.#failed === undefined;
  }

  /** The whole body, when `complete`. */
  takeBody(): Buffer {
    const body = this.#early.length === 1 ? (this.#early[0] as Buffer) : Buffer.concat(this.#early, this.#earlyBytes);
    this.#early = [];
    this.#earlyBytes = 0;
    return body;
  }

  /** Start delivering the body to `sink` (early bytes first, in order). */
  attach(sink: BodySink): void {
    this.#sink = sink;
    const early = this.#early;
    this.#early = [];
    this.#earlyBytes = 0;
    let paused = false;
    for (const chunk of early) if (!sink.data(chunk)) paused = true;
    if (this.#failed) sink.error(this.#failed);
    else if (this.#ended) sink.end();
    else if (paused) this.#controller?.pause();
    else this.#controller?.resume();
  }

  pause(): void {
    this.#controller?.pause();
  }

  resume(): void {
    this.#controller?.resume();
  }

  /** Stop the upstream exchange (client gone, masking failed). */
  abort(err: Error): void {
    if (this.#ended) return;
    this.#abortReason ??= err;
    if (this.#controller && !this.#controller.aborted) this.#controller.abort(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // Aborted while still queued for a connection: never send it.
    if (this.#abortReason) controller.abort(this.#abortReason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx interim answers (103 Early Hints) are not the response.
    if (statusCode < 200) return;
    this.#head = { statusCode, headers };
    this.#resolve(this.#head);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#sink) {
      if (!this.#sink.data(chunk)) controller.pause();
      return;
    }
    this.#early.push(chunk);
    this.#earlyBytes += chunk.length;
    if (this.#earlyBytes > EARLY_LIMIT) controller.pause();
  }

  onResponseEnd(): void {
    this.#ended = true;
    this.#sink?.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (!this.#head) {
      this.#reject(err);
      return;
    }
    if (this.#ended) return;
    this.#failed = err;
    this.#early = [];
    this.#earlyBytes = 0;
    this.#sink?.error(err);
  }
}
