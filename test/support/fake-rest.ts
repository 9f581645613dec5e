/**
 * A plain REST upstream for http-proxy tests: a contacts API with PII in its answers, a
 * text endpoint, a binary endpoint and an echo. Records every request it receives.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SeenRequest } from './fake-openai.js';

export interface FakeRest {
  url: string;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export const CONTACT = {
  id: '1',
  name: 'Ann Example',
  email: 'ann@example.com',
  phone: '+1 415 555 0132',
  notes: 'Paid with 4111 1111 1111 1111, backup mail ann.alt@example.org',
  ssn: '078-05-1120',
};

export async function startFakeRest(): Promise<FakeRest> {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const path = (req.url ?? '').split('?')[0] ?? '';
      const json = (status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (path === '/v1/contacts' && req.method === 'GET') return json(200, { contacts: [CONTACT, { ...CONTACT, id: '2', ssn: '219-09-9999' }] });
      if (path.startsWith('/v1/contacts/') && req.method === 'GET') return json(200, { ...CONTACT, id: path.slice('/v1/contacts/'.length) });
      if (path === '/v1/contacts' && req.method === 'POST') return json(201, { created: true, received: body.length });
      if (path === '/v1/admin/keys') return json(200, { root_key: 'AKIAIOSFODNN7EXAMPLE' });
      // The upstream also tries to set the decision-id header: the proxy's own must win.
      if (path === '/v1/notes.txt') {
        return res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-scopegate-decision-id': 'forged-by-upstream' }).end('Call Ann at ann@example.com');
      }
      if (path === '/v1/photo') return res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(Buffer.from([0, 1, 2, 3]));
      return json(404, { error: 'not found' });
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
