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

function maskToolCalls(calls: unknown, mask: CompiledMask): void {
  if (!Array.isArray(calls)) return;
  for (const tc of calls) {
    if (isObj(tc) && isObj(tc.function) && typeof tc.function.arguments === 'string') {
      tc.function.arguments = maskToolArguments(tc.function.arguments, mask);
    }
  }
}

/** A non-streamed `chat.completion` (or any JSON): tool arguments parsed and masked, then the rest. */
export function maskChatCompletion(body: unknown, mask: CompiledMask): unknown {
  if (mask.empty) return body;
  const masked = maskJson(body, mask);
  if (isObj(masked) && Array.isArray(masked.choices)) {
    for (const choice of masked.choices) if (isObj(choice) && isObj(choice.message)) maskToolCalls(choice.message.tool_calls, mask);
  }
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
  if (Array.isArray(masked.messages)) for (const msg of masked.messages) if (isObj(msg)) maskToolCalls(msg.tool_calls, mask);
  return { ...body, ...masked };
}
