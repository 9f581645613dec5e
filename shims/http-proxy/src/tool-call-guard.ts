/**
 * Tool calls in model answers are decided, not only masked: before a tool call reaches the
 * agent (which would run it), the PDP is asked a `tool` decision for it — resource
 * `{kind: 'tool', name}`, request `{tool: {name, arguments}}`, with the agent's own token.
 *
 * A refused call is removed from the answer and replaced by a refusal the agent can read:
 * the OpenAI `refusal` field of the message (streamed: of the delta), naming the tool, the
 * deny code and the decision id (and the approval id when the policy wants one). Calls that
 * are allowed are passed on unchanged; when every call of a choice is refused its
 * `finish_reason` becomes `stop`, so agent loops end instead of waiting for tool results.
 * The rest of the answer stays usable — failing the whole response would also throw away
 * the text and the allowed calls, and a stream has already answered 200 by then.
 *
 * Streams: tool-call fragments (id, name, arguments) are held per choice until that choice
 * finishes (or the stream ends), then decided together and released as one delta — text
 * deltas keep flowing meanwhile. Holding is bounded; past the bound the stream is cut.
 */
import { StringDecoder } from 'node:string_decoder';
import { Transform, type TransformCallback } from 'node:stream';
import type { Decision } from '../../../pdp-server/src/contract.js';

/** Decide one tool call; must never throw (PdpClient.decide does not). */
export type ToolCallChecker = (name: string, args: unknown) => Promise<Decision>;

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const EVENT_BOUNDARY = /\r\n\r\n|\n\n|\r\r/;

export const TOOL_GUARD_LIMITS = {
  /** Accumulated arguments of one streamed tool call. */
  argsChars: 256 * 1024,
  /** Tool calls held per choice. */
  callsPerChoice: 128,
  /** One SSE event. */
  eventChars: 1024 * 1024,
} as const;

export class ToolGuardError extends Error {
  constructor(readonly code: 'tool_call_too_large' | 'sse_event_too_large') {
    super(code);
  }
}

/** The refusal text shown in place of a refused tool call. */
export function refusalText(name: string, decision: Decision): string {
  const code = decision.effect === 'approval_required' ? 'approval_required' : (decision.code ?? 'denied');
  const approval = decision.obligations.approval ? `, approval ${decision.obligations.approval.id}` : '';
  return `scopegate refused the tool call "${name}" (${code}; decision ${decision.decision_id}${approval}).`;
}

/** Arguments as the policy sees them: parsed JSON when they parse, else the raw string. */
function parsedArgs(args: string): unknown {
  try {
    return JSON.parse(args);
  } catch {
    return args;
  }
}

async function decideAll(calls: ReadonlyArray<{ name: string; args: string }>, check: ToolCallChecker): Promise<Decision[]> {
  return Promise.all(calls.map((c) => check(c.name, parsedArgs(c.args))));
}

function joinRefusals(existing: unknown, added: string[]): string {
  return [typeof existing === 'string' && existing !== '' ? existing : undefined, ...added].filter((s) => s !== undefined).join('\n');
}

/** A non-streamed `chat.completion`: refused tool calls removed, refusals added. Other shapes are returned as they are. */
export async function guardChatCompletion(body: unknown, check: ToolCallChecker): Promise<unknown> {
  if (!isObj(body) || !Array.isArray(body.choices)) return body;
  for (const choice of body.choices) {
    if (!isObj(choice) || !isObj(choice.message) || !Array.isArray(choice.message.tool_calls) || choice.message.tool_calls.length === 0) continue;
    const message = choice.message;
    const calls = (message.tool_calls as unknown[]).map((tc) => {
      const fn = isObj(tc) && isObj(tc.function) ? tc.function : {};
      return { raw: tc, name: typeof fn.name === 'string' ? fn.name : '', args: typeof fn.arguments === 'string' ? fn.arguments : '' };
    });
    const decisions = await decideAll(calls, check);
    const kept: unknown[] = [];
    const refusals: string[] = [];
    calls.forEach((c, i) => {
      const d = decisions[i] as Decision;
      if (d.effect === 'allow') kept.push(c.raw);
      else refusals.push(refusalText(c.name, d));
    });
    if (refusals.length === 0) continue;
    if (kept.length) message.tool_calls = kept;
    else {
      delete message.tool_calls;
      if (choice.finish_reason === 'tool_calls') choice.finish_reason = 'stop';
    }
    message.refusal = joinRefusals(message.refusal, refusals);
  }
  return body;
}

interface HeldCall {
  id?: unknown;
  type?: unknown;
  name: string;
  args: string;
}

/**
 * The streamed guard as a plain object: `write` returns the text to send, synchronously
 * unless a held call must be decided first (then a promise). Callers feed it serially —
 * the next `write` only after the previous result settled. Events without tool-call work
 * pass through in the same tick, so the first bytes of an answer are not delayed.
 */
export class SseToolGuard {
  readonly #decoder = new StringDecoder('utf8');
  #buffer = '';
  readonly #held = new Map<number, Map<number, HeldCall>>();
  #template: Json = {};

  constructor(private readonly check: ToolCallChecker) {}

  /** Feed bytes; the text to release (or a promise of it). Throws ToolGuardError. */
  write(data: Buffer | string): string | Promise<string> {
    this.#buffer += typeof data === 'string' ? data : this.#decoder.write(data);
    return this.#events('');
  }

  /** End of the upstream stream: the unfinished event and every held call. */
  end(): string | Promise<string> {
    this.#buffer += this.#decoder.end();
    const tail = this.#buffer.trim() === '' ? '' : this.#event(this.#buffer);
    this.#buffer = '';
    const withHeld = (t: string): string | Promise<string> => (this.#held.size === 0 ? t : this.#releaseAll().then((r) => t + r));
    return typeof tail === 'string' ? withHeld(tail) : tail.then(withHeld);
  }

  #events(out: string): string | Promise<string> {
    for (let m = EVENT_BOUNDARY.exec(this.#buffer); m; m = EVENT_BOUNDARY.exec(this.#buffer)) {
      const raw = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      const r = this.#event(raw);
      if (typeof r !== 'string') return r.then((text) => this.#events(out + text));
      out += r;
    }
    if (this.#buffer.length > TOOL_GUARD_LIMITS.eventChars) throw new ToolGuardError('sse_event_too_large');
    return out;
  }

  #hold(choice: number, fragments: unknown[]): void {
    const calls = this.#held.get(choice) ?? new Map<number, HeldCall>();
    this.#held.set(choice, calls);
    for (const f of fragments) {
      if (!isObj(f)) continue;
      const index = typeof f.index === 'number' ? f.index : 0;
      let call = calls.get(index);
      if (!call) {
        if (calls.size >= TOOL_GUARD_LIMITS.callsPerChoice) throw new ToolGuardError('tool_call_too_large');
        call = { name: '', args: '' };
        calls.set(index, call);
      }
      if (f.id !== undefined) call.id = f.id;
      if (f.type !== undefined) call.type = f.type;
      const fn = isObj(f.function) ? f.function : {};
      if (typeof fn.name === 'string') call.name += fn.name;
      if (typeof fn.arguments === 'string') call.args += fn.arguments;
      if (call.args.length + call.name.length > TOOL_GUARD_LIMITS.argsChars) throw new ToolGuardError('tool_call_too_large');
    }
  }

  /** Decide a choice's held calls; returns the delta to release and whether any call survived. */
  async #release(choice: number): Promise<{ delta: Json; anyAllowed: boolean } | undefined> {
    const calls = this.#held.get(choice);
    this.#held.delete(choice);
    if (!calls || calls.size === 0) return undefined;
    const list = [...calls.values()];
    const decisions = await decideAll(list, this.check);
    const toolCalls: Json[] = [];
    const refusals: string[] = [];
    list.forEach((c, i) => {
      const d = decisions[i] as Decision;
      // Allowed calls are renumbered densely: clients accumulate fragments by index.
      if (d.effect === 'allow') toolCalls.push({ index: toolCalls.length, ...(c.id !== undefined ? { id: c.id } : {}), type: c.type ?? 'function', function: { name: c.name, arguments: c.args } });
      else refusals.push(refusalText(c.name, d));
    });
    const delta: Json = {};
    if (toolCalls.length) delta.tool_calls = toolCalls;
    if (refusals.length) delta.refusal = refusals.join('\n');
    return { delta, anyAllowed: toolCalls.length > 0 };
  }

  #chunkEvent(choices: Json[]): string {
    return `data: ${JSON.stringify({ ...this.#template, object: this.#template.object ?? 'chat.completion.chunk', choices })}\n\n`;
  }

  async #releaseAll(): Promise<string> {
    let out = '';
    for (const index of [...this.#held.keys()]) {
      const r = await this.#release(index);
      if (r) out += this.#chunkEvent([{ index, delta: r.delta, finish_reason: null }]);
    }
    return out;
  }

  #event(raw: string): string | Promise<string> {
    const passthrough = raw + '\n\n';
    const dataLines = raw.split(/\r\n|\n|\r/).filter((l) => l.startsWith('data:'));
    if (dataLines.length === 0) return passthrough;
    const payload = dataLines.map((l) => l.slice(l[5] === ' ' ? 6 : 5)).join('\n');
    if (payload === '[DONE]') return this.#held.size === 0 ? passthrough : this.#releaseAll().then((r) => r + passthrough);
    let chunk: unknown;
    try {
      chunk = JSON.parse(payload);
    } catch {
      return passthrough;
    }
    if (!isObj(chunk) || !Array.isArray(chunk.choices)) return passthrough;
    this.#template = { id: chunk.id, object: chunk.object, created: chunk.created, model: chunk.model };
    // First pass (synchronous): hold fragments, note which choices finished with calls held.
    const seen: Array<{ choice: Json; index: number; delta: Json | undefined; held: boolean; finished: boolean } | { raw: unknown }> = [];
    const toRelease: number[] = [];
    for (const [n, choice] of chunk.choices.entries()) {
      if (!isObj(choice)) {
        seen.push({ raw: choice });
        continue;
      }
      const index = typeof choice.index === 'number' ? choice.index : n;
      const delta = isObj(choice.delta) ? choice.delta : undefined;
      let held = false;
      if (delta && Array.isArray(delta.tool_calls)) {
        this.#hold(index, delta.tool_calls);
        delete delta.tool_calls;
        held = true;
      }
      const finished = choice.finish_reason !== null && choice.finish_reason !== undefined;
      if (finished && this.#held.has(index)) toRelease.push(index);
      seen.push({ choice, index, delta, held, finished });
    }
    // Second pass: build the answer, with the decisions of the released calls when there are any.
    const build = (released: ReadonlyMap<number, { delta: Json; anyAllowed: boolean } | undefined>): string => {
      let touched = false;
      let before = '';
      const choices: unknown[] = [];
      for (const entry of seen) {
        if ('raw' in entry) {
          choices.push(entry.raw);
          continue;
        }
        const { choice, index, delta, finished } = entry;
        if (entry.held) touched = true;
        if (released.has(index)) {
          const r = released.get(index);
          if (r) {
            before += this.#chunkEvent([{ index, delta: r.delta, finish_reason: null }]);
            if (!r.anyAllowed && choice.finish_reason === 'tool_calls') choice.finish_reason = 'stop';
            touched = true;
          }
        }
        // A chunk that only carried held fragments is dropped rather than sent empty.
        const empty = !finished && (!delta || Object.keys(delta).length === 0) && choice.logprobs == null;
        if (!(touched && empty)) choices.push(choice);
      }
      if (!touched) return passthrough;
      if (choices.length === 0 && chunk.usage == null) return before;
      return before + `data: ${JSON.stringify({ ...chunk, choices })}\n\n`;
    };
    if (toRelease.length === 0) return build(new Map());
    return (async () => {
      const released = new Map<number, { delta: Json; anyAllowed: boolean } | undefined>();
      for (const index of toRelease) if (!released.has(index)) released.set(index, await this.#release(index));
      return build(released);
    })();
  }
}

/** SSE transform: hold streamed tool calls per choice, decide them at the choice's end, release or refuse. */
export function createSseToolGuard(check: ToolCallChecker): Transform {
  const guard = new SseToolGuard(check);
  const settle = (produce: () => string | Promise<string>, cb: TransformCallback): void => {
    let out: string | Promise<string>;
    try {
      out = produce();
    } catch (err) {
      cb(err as Error);
      return;
    }
    if (typeof out === 'string') cb(null, out === '' ? undefined : out);
    else out.then((text) => cb(null, text === '' ? undefined : text), (err: Error) => cb(err));
  };
  return new Transform({
    transform(data: Buffer, _enc, cb: TransformCallback) {
      settle(() => guard.write(data), cb);
    },
    flush(cb: TransformCallback) {
      settle(() => guard.end(), cb);
    },
  });
}
