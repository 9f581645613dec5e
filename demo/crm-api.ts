/**
 * The demo's CRM: a tiny REST API standing in for a SaaS CRM. It insists on its own API key
 * (which only the http-proxy holds) and records every request, so the demo can show that a
 * denied DELETE never reached it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CrmApi {
  url: string;
  /** `METHOD path` of every request that reached the CRM. */
  hits: string[];
  close(): Promise<void>;
}

const CONTACTS: Record<string, Record<string, string>> = {
  '1': { id: '1', name: 'Ada Lovelace', email: 'ada@example.com', phone: '+1 415 555 0132', company: 'Analytical Engines Ltd', notes: 'Prefers email. Renewal due in June.' },
  '2': { id: '2', name: 'Alan Turing', email: 'alan@example.com', phone: '+44 20 7946 0958', company: 'Bletchley Computing', notes: 'Asked about bulk pricing.' },
};

export async function startCrmApi(apiKey: string): Promise<CrmApi> {
  const hits: string[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      hits.push(`${req.method} ${path}`);
      const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.headers['x-api-key'] !== apiKey) return json(401, { error: 'bad api key' });
      const m = /^\/v1\/contacts\/([^/]+)$/.exec(path);
      if (m && req.method === 'GET') {
        const contact = CONTACTS[m[1] ?? ''];
        return contact ? json(200, contact) : json(404, { error: 'no such contact' });
      }
      if (m && req.method === 'DELETE') return res.writeHead(204).end();
      if (path === '/v1/contacts' && req.method === 'GET') return json(200, { contacts: Object.values(CONTACTS) });
      return json(404, { error: 'not found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
