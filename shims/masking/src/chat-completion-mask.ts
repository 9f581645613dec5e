/**
 * OpenAI-compatible chat payloads: tool-call arguments are JSON inside a string, so field
 * rules (`$.card_number`, `ssn`) only apply once they are parsed. Used for model answers
 * (response masking) and for prompts (request-side masking before an external model).
 */
import { maskJson } from './json-mask.js';
import { maskText, type CompiledMask } from './mask-rules.js';

type Json = Record<string, unknown>;
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Mask the arguments string of a tool call: as JSON when it parses, else as text. */
export function maskToolArguments(args: string, mask: CompiledMask): string {
  if (mask.empty) return args;
  try {
    return JSON.stringify(maskJson(JSON.parse(args), mask));
  } catch {
    return maskText(args, mask);
  }
}

/** A non-streamed `chat.completion` (or any JSON): tool arguments parsed and masked, then the rest. */
export function maskChatCompletion(body: unknown, mask: CompiledMask): unknown {
  if (mask.empty) return body;
  const masked = maskJson(body, mask);
  if (!isObj(masked) || !Array.isArray(masked.choices) || !isObj(body) || !Array.isArray(body.choices)) return masked;
  // Arguments are masked from the original string: the text pass above already rewrote
  // detector hits inside it, which would hide field names from the target rules.
  const originalChoices: unknown[] = body.choices;
  masked.choices.forEach((choice, i) => {
    const original = originalChoices[i];
    if (!isObj(choice) || !isObj(choice.message) || !isObj(original) || !isObj(original.message)) return;
    const calls = choice.message.tool_calls;
    const originals = original.message.tool_calls;
    if (!Array.isArray(calls) || !Array.isArray(originals)) return;
    calls.forEach((tc, k) => {
      const src = originals[k] as unknown;
      if (isObj(tc) && isObj(tc.function) && isObj(src) && isObj(src.function) && typeof src.function.arguments === 'string') {
        tc.function.arguments = maskToolArguments(src.function.arguments, mask);
      }
    });
  });
  return masked;
}

/**
 * A chat / embeddings / completions request body: the text of every message (string or text
 * parts), `input` and `prompt`, and assistant tool-call arguments. Other fields (model,
 * parameters) are left alone so the request still means the same thing upstream.
 */
export function maskChatRequest(body: Json, mask: CompiledMask): Json {
  if (mask.empty) return body;
  const picked: Json = {};
  for (const key of ['messages', 'input', 'prompt'] as const) if (key in body) picked[key] = body[key];
  const masked = maskJson(picked, mask) as Json;
  // Tool arguments are re-masked from the original strings so field rules see real field names.
  if (Array.isArray(masked.messages) && Array.isArray(body.messages)) {
    masked.messages.forEach((msg, i) => {
      const src = (body.messages as unknown[])[i];
      if (!isObj(msg) || !isObj(src) || !Array.isArray(msg.tool_calls) || !Array.isArray(src.tool_calls)) return;
      msg.tool_calls.forEach((tc, k) => {
        const orig = (src.tool_calls as unknown[])[k];
        if (isObj(tc) && isObj(tc.function) && isObj(orig) && isObj(orig.function) && typeof orig.function.arguments === 'string') {
          tc.function.arguments = maskToolArguments(orig.function.arguments, mask);
        }
      });
    });
  }
  return { ...body, ...masked };
}
