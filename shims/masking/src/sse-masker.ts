/**
 * Masking of a Server-Sent Events stream (text/event-stream), incrementally.
 *
 * Bytes are decoded with a streaming UTF-8 decoder (a character split across network
 * chunks is completed by the next chunk), cut into events at blank lines (WHATWG HTML
 * "server-sent events", §9.2.6 interpretation), and each event is rewritten and released
 * at once — the only things held back are an unfinished event and, for OpenAI chat
 * completion chunks, the streaming hold-back of each choice's text and the arguments of
 * tool calls until the choice finishes (both bounded).
 */
import { StringDecoder } from 'node:string_decoder';
import { Transform, type TransformCallback } from 'node:stream';
import { maskJson } from './json-mask.js';
import { maskText, type CompiledMask } from './mask-rules.js';
import { StreamingTextMasker, type StreamingTextMaskerOptions } from './streaming-text-masker.js';
import { maskToolArguments } from './chat-completion-mask.js';

export interface SseMaskerOptions extends StreamingTextMaskerOptions {
  /** Largest single event (bytes as characters); a longer one aborts the stream. */
  maxEventChars?: number;
  /** Largest accumulated arguments of one streamed tool call. */
  maxToolArgsChars?: number;
}

export class SseMaskError extends Error {
  constructor(readonly code: 'sse_event_too_large' | 'sse_tool_arguments_too_large', message: string) {
    super(message);
  }
}

interface ChunkTemplate {
  id?: unknown;
  object?: unknown;
  created?: unknown;
  model?: unknown;
}

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const EVENT_BOUNDARY = /\r\n\r\n|\n\n|\r\r/;

export class SseMasker {
  private readonly decoder = new StringDecoder('utf8');
  private buffer = '';
  private readonly text = new Map<number, StreamingTextMasker>();
  private readonly toolArgs = new Map<number, Map<number, string>>();
  private template: ChunkTemplate | undefined;
  private readonly maxEventChars: number;
  private readonly maxToolArgsChars: number;

  constructor(
    private readonly mask: CompiledMask,
    private readonly opts: SseMaskerOptions = {},
  ) {
    this.maxEventChars = opts.maxEventChars ?? 1024 * 1024;
    this.maxToolArgsChars = opts.maxToolArgsChars ?? 256 * 1024;
  }

  /**
   * Feed raw bytes (or text already decoded by an earlier stage — use one kind per stream);
   * returns the masked text ready to send (possibly empty). Throws SseMaskError.
   */
  write(chunk: Buffer | string): string {
    this.buffer += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    let out = '';
    for (let m = EVENT_BOUNDARY.exec(this.buffer); m; m = EVENT_BOUNDARY.exec(this.buffer)) {
      const raw = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      out += this.event(raw);
    }
    if (this.buffer.length > this.maxEventChars) throw new SseMaskError('sse_event_too_large', 'event exceeds the bound');
    return out;
  }

  /** End of the upstream stream: release what is held. */
  end(): string {
    this.buffer += this.decoder.end();
    let out = this.buffer.trim() === '' ? '' : this.event(this.buffer);
    this.buffer = '';
    out += this.drain(undefined);
    return out;
  }

  private event(raw: string): string {
    const lines = raw.split(/\r\n|\n|\r/);
    const data: string[] = [];
    const other: string[] = [];
    for (const line of lines) {
      if (line.startsWith('data:')) data.push(line.slice(line[5] === ' ' ? 6 : 5));
      else if (line.startsWith(':')) continue; // comments carry nothing the client needs
      else other.push(maskText(line, this.mask));
    }
    const prefix = other.length ? other.join('\n') + '\n' : '';
    if (data.length === 0) return other.length ? prefix + '\n' : '';
    const payload = data.join('\n');
    if (payload === '[DONE]') return this.drain(undefined) + prefix + 'data: [DONE]\n\n';
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return prefix + maskText(payload, this.mask).split('\n').map((l) => `data: ${l}\n`).join('') + '\n';
    }
    const rewritten = isObj(parsed) && Array.isArray(parsed.choices) ? this.chatChunk(parsed) : maskJson(parsed, this.mask);
    return prefix + `data: ${JSON.stringify(rewritten)}\n\n`;
  }

  /** One `chat.completion.chunk`: content through the per-choice hold-back, tool arguments held until finish. */
  private chatChunk(chunk: Json): Json {
    this.template = { id: chunk.id, object: chunk.object, created: chunk.created, model: chunk.model };
    const choices = chunk.choices as unknown[];
    const kept: Array<{ delta: Json; content: string | undefined; tools: unknown[] | undefined }> = [];
    // Mask everything except the streamed text and tool arguments as ordinary JSON first.
    for (const choice of choices) {
      const delta = isObj(choice) && isObj(choice.delta) ? choice.delta : undefined;
      const content = delta && typeof delta.content === 'string' ? delta.content : undefined;
      const tools = delta && Array.isArray(delta.tool_calls) ? delta.tool_calls : undefined;
      if (delta) {
        delete delta.content;
        delete delta.tool_calls;
      }
      kept.push({ delta: delta ?? {}, content, tools });
    }
    const masked = maskJson(chunk, this.mask) as Json;
    const maskedChoices = masked.choices as unknown[];
    maskedChoices.forEach((choice, n) => {
      if (!isObj(choice)) return;
      const index = typeof choice.index === 'number' ? choice.index : n;
      const delta: Json = isObj(choice.delta) ? choice.delta : {};
      const { content, tools } = kept[n] ?? { content: undefined, tools: undefined };
      const finished = choice.finish_reason !== null && choice.finish_reason !== undefined;
      let text = content === undefined ? undefined : this.textMasker(index).push(content);
      if (tools) delta.tool_calls = tools.map((tc) => this.holdToolCall(index, tc));
      if (finished) {
        const rest = this.text.get(index)?.flush() ?? '';
        this.text.delete(index);
        if (rest !== '') text = (text ?? '') + rest;
        const done = this.releaseToolCalls(index);
        if (done.length) delta.tool_calls = [...((delta.tool_calls as unknown[] | undefined) ?? []), ...done];
      }
      if (text !== undefined) delta.content = text;
      if (isObj(choice.delta) || text !== undefined || delta.tool_calls) choice.delta = delta;
    });
    return masked;
  }

  private textMasker(index: number): StreamingTextMasker {
    let m = this.text.get(index);
    if (!m) {
      m = new StreamingTextMasker(this.mask, this.opts);
      this.text.set(index, m);
    }
    return m;
  }

  /** Keep a tool call's id/name flowing to the client but withhold its argument fragments. */
  private holdToolCall(choice: number, tc: unknown): unknown {
    if (!isObj(tc)) return tc;
    const index = typeof tc.index === 'number' ? tc.index : 0;
    const fn = isObj(tc.function) ? tc.function : undefined;
    if (fn && typeof fn.arguments === 'string') {
      const calls = this.toolArgs.get(choice) ?? new Map<number, string>();
      this.toolArgs.set(choice, calls);
      const args = (calls.get(index) ?? '') + fn.arguments;
      if (args.length > this.maxToolArgsChars) throw new SseMaskError('sse_tool_arguments_too_large', 'tool call arguments exceed the bound');
      calls.set(index, args);
      return { ...maskJson({ ...tc, function: { ...fn, arguments: '' } }, this.mask) as Json };
    }
    return maskJson(tc, this.mask);
  }

  private releaseToolCalls(choice: number): unknown[] {
    const calls = this.toolArgs.get(choice);
    this.toolArgs.delete(choice);
    if (!calls) return [];
    return [...calls.entries()].map(([index, args]) => ({ index, function: { arguments: maskToolArguments(args, this.mask) } }));
  }

  /** Release every choice's held text and tool arguments as one synthesized chunk (before [DONE] / at end). */
  private drain(_reason: undefined): string {
    const choices: Json[] = [];
    for (const [index, masker] of this.text) {
      const rest = masker.flush();
      const tools = this.releaseToolCalls(index);
      if (rest === '' && tools.length === 0) continue;
      const delta: Json = {};
      if (rest !== '') delta.content = rest;
      if (tools.length) delta.tool_calls = tools;
      choices.push({ index, delta, finish_reason: null });
    }
    for (const index of [...this.toolArgs.keys()]) {
      const tools = this.releaseToolCalls(index);
      if (tools.length) choices.push({ index, delta: { tool_calls: tools }, finish_reason: null });
    }
    this.text.clear();
    if (choices.length === 0) return '';
    const t = this.template ?? {};
    return `data: ${JSON.stringify({ id: t.id, object: t.object ?? 'chat.completion.chunk', created: t.created, model: t.model, choices })}\n\n`;
  }
}

/** A Transform wrapper for piping: bytes in, masked bytes out; errors carry SseMaskError. */
export function createSseMaskTransform(mask: CompiledMask, opts: SseMaskerOptions = {}): Transform {
  const masker = new SseMasker(mask, opts);
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      try {
        const out = masker.write(chunk);
        cb(null, out === '' ? undefined : out);
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback) {
      try {
        const out = masker.end();
        cb(null, out === '' ? undefined : out);
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}
