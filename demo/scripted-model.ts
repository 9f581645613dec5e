/**
 * The demo's model: a local OpenAI-compatible chat-completions server that answers from the
 * demo script instead of thinking. It finds its place from the conversation itself (the last
 * user message, and how many assistant turns followed it), so it keeps no state per client.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { DemoStep } from './demo-script.js';

export interface ScriptedModel {
  url: string;
  /** Chat-completion requests that reached the model. */
  calls: number;
  close(): Promise<void>;
}

interface ChatMessage {
  role?: string;
  content?: unknown;
}

export async function startScriptedModel(steps: readonly DemoStep[]): Promise<ScriptedModel> {
  const state = { calls: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.method !== 'POST' || !(req.url ?? '').endsWith('/chat/completions')) return json(404, { error: { message: 'not found' } });
      let body: { model?: string; messages?: ChatMessage[] };
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
      } catch {
        return json(400, { error: { message: 'bad json' } });
      }
      state.calls++;
      const messages = Array.isArray(body.messages) ? body.messages : [];
      let lastUser = -1;
      for (let i = messages.length - 1; i >= 0; i--) {
        if (messages[i]?.role === 'user') {
          lastUser = i;
          break;
        }
      }
      const stepIndex = steps.findIndex((s) => s.user === messages[lastUser]?.content);
      const step = steps[stepIndex];
      const turn = messages.slice(lastUser + 1).filter((m) => m.role === 'assistant').length;
      const reply = step?.model[turn] ?? { content: 'I have nothing scripted for that.' };
      const message =
        'toolCalls' in reply
          ? {
              role: 'assistant',
              content: null,
              tool_calls: reply.toolCalls.map((tc, i) => ({
                id: `call_${stepIndex}_${turn}_${i}`,
                type: 'function',
                function: { name: tc.name, arguments: JSON.stringify(tc.args) },
              })),
            }
          : { role: 'assistant', content: reply.content };
      return json(200, {
        id: `chatcmpl-demo-${state.calls}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body.model ?? 'unknown',
        choices: [{ index: 0, message, finish_reason: 'toolCalls' in reply ? 'tool_calls' : 'stop', logprobs: null }],
        usage: { prompt_tokens: 10, completion_tokens: 10, total_tokens: 20 },
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get calls() {
      return state.calls;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
