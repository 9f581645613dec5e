/**
 * A small OpenAI-compatible upstream for tests: chat completions (streamed and not, with
 * tool calls), embeddings and the model list. It records every request it receives so
 * tests can assert what reached it — and that a refused request reached nothing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface FakeReply {
  /** Assistant text; streamed in `chunkChars`-sized deltas. */
  content?: string;
  toolCalls?: Array<{ name: string; arguments: string }>;
  /** Characters per streamed delta (default 3). */
  chunkChars?: number;
}

export interface FakeOpenAi {
  url: string;
  seen: SeenRequest[];
  /** What the next completions answer with (until changed). */
  setReply(reply: FakeReply): void;
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function pieces(text: string, size: number): string[] {
  const chars = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

/** Write one SSE event and yield to the event loop so it leaves as its own TCP write. */
function sse(res: ServerResponse, data: unknown): Promise<void> {
  res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  return new Promise((r) => setImmediate(r));
}

export async function startFakeOpenAi(): Promise<FakeOpenAi> {
  const seen: SeenRequest[] = [];
  let reply: FakeReply = { content: 'Hello from the fake model.' };

  async function chat(res: ServerResponse, body: Record<string, unknown>): Promise<void> {
    const model = String(body.model ?? 'unknown');
    const base = { id: 'chatcmpl-fake', created: 1700000000, model };
    const toolCalls = (reply.toolCalls ?? []).map((tc, i) => ({ id: `call_${i}`, type: 'function' as const, function: tc }));
    const finish = toolCalls.length ? 'tool_calls' : 'stop';
    if (body.stream !== true) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          ...base,
          object: 'chat.completion',
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: toolCalls.length ? null : (reply.content ?? ''), ...(toolCalls.length ? { tool_calls: toolCalls } : {}), refusal: null },
              finish_reason: finish,
              logprobs: null,
            },
          ],
          usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
        }),
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const chunk = (delta: unknown, finish_reason: string | null = null) => ({
      ...base,
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, finish_reason, logprobs: null }],
    });
    await sse(res, chunk({ role: 'assistant', content: '' }));
    if (toolCalls.length) {
      for (const [i, tc] of toolCalls.entries()) {
        await sse(res, chunk({ tool_calls: [{ index: i, id: tc.id, type: 'function', function: { name: tc.function.name, arguments: '' } }] }));
        for (const frag of pieces(tc.function.arguments, reply.chunkChars ?? 3)) {
          await sse(res, chunk({ tool_calls: [{ index: i, function: { arguments: frag } }] }));
        }
      }
    } else {
      for (const piece of pieces(reply.content ?? '', reply.chunkChars ?? 3)) await sse(res, chunk({ content: piece }));
    }
    await sse(res, chunk({}, finish));
    await sse(res, '[DONE]');
    res.end();
  }

  const server: Server = createServer(async (req, res) => {
    const body = await readBody(req);
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    const path = (req.url ?? '').split('?')[0];
    let json: Record<string, unknown> = {};
    try {
      json = body ? (JSON.parse(body) as Record<string, unknown>) : {};
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad json"}}');
      return;
    }
    if (req.method === 'POST' && path === '/v1/chat/completions') return chat(res, json);
    if (req.method === 'POST' && path === '/v1/embeddings') {
      const inputs = Array.isArray(json.input) ? json.input : [json.input];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          object: 'list',
          model: json.model,
          data: inputs.map((s, index) => ({ object: 'embedding', index, embedding: [String(s).length / 100, 0.5, 0.25] })),
          usage: { prompt_tokens: 1, total_tokens: 1 },
        }),
      );
      return;
    }
    if (req.method === 'GET' && path === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"object":"list","data":[{"id":"gpt-4o-mini","object":"model"}]}');
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    setReply(r) {
      reply = r;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
