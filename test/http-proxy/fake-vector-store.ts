/**
 * A tiny vector-store upstream (Qdrant-shaped REST: `POST /collections/{name}/points/search`)
 * whose search hits carry payloads with PII, so masking of vector-store answers can be
 * checked. It checks its own `api-key` header like the real one does, and records every
 * request it receives.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SeenRequest } from '../support/fake-openai.js';

export interface FakeVectorStore {
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export const HITS = [
  { id: 7, score: 0.93, payload: { text: 'Ticket from ann@example.com about a refund', customer: { email: 'ann@example.com', ssn: '078-05-1120' } } },
  { id: 9, score: 0.81, payload: { text: 'Call back bob@example.org', customer: { email: 'bob@example.org', ssn: '219-09-9999' } } },
];

export async function startFakeVectorStore(apiKey: string): Promise<FakeVectorStore> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const json = (status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (req.headers['api-key'] !== apiKey) return json(401, { status: { error: 'bad api key' } });
      const m = /^\/collections\/([^/]+)\/points\/search$/.exec((req.url ?? '').split('?')[0] ?? '');
      if (m && req.method === 'POST') {
        const limit = (JSON.parse(body || '{}') as { limit?: number }).limit ?? HITS.length;
        return json(200, { result: HITS.slice(0, limit), status: 'ok', time: 0.001 });
      }
      if (m === null && req.method === 'GET' && req.url === '/collections') return json(200, { result: { collections: [{ name: 'tickets' }] }, status: 'ok' });
      return json(404, { status: { error: 'not found' } });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
