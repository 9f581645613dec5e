/**
 * The benchmark's upstreams, in their own process so the load generator and the proxies do
 * not share its event loop: a small fast node:http JSON API and the tests' OpenAI-compatible
 * fake (for SSE). Prints one JSON line `{json, openai}` with their URLs once listening.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFakeOpenAi } from '../../test/support/fake-openai.js';

const ITEM = JSON.stringify({
  id: 1,
  name: 'Widget',
  owner: 'ann@example.com',
  notes: 'Ships in 2 days; call +1 415 555 0132 for bulk orders.',
  tags: ['blue', 'metal', 'small'],
  price: 12.5,
});

const api = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(ITEM) });
    res.end(ITEM);
  });
});
api.keepAliveTimeout = 60_000;
await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
const openai = await startFakeOpenAi();
openai.setReply({ content: 'The quick brown fox jumps over the lazy dog, twice over.', chunkChars: 4 });
process.stdout.write(`${JSON.stringify({ json: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, openai: openai.url })}\n`);

const stop = () => {
  api.closeAllConnections();
  api.close();
  void openai.close().then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
