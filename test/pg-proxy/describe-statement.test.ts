/**
 * Clients that describe a prepared statement but never the portal (JDBC's way: Parse +
 * Describe Statement once, then Bind/Execute) get their rows masked column by column — not
 * every value withheld — in the formats their Bind asked for, and a Describe answer can never
 * be applied to another statement parsed under the same name meanwhile.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import { encodeStartup } from '../../shims/pg-proxy/src/wire-codec.js';
import { startHarness, type Harness } from './harness.js';

let h: Harness;
let token: string;
before(async () => {
  h = await startHarness();
  token = await h.token(['sql:orders-db:select:public.*']);
});
after(() => h.close());

interface Frame {
  type: string;
  body: Buffer;
}

/** A bare protocol-v3 connection through the proxy: what a driver without node-postgres sends. */
class RawSession {
  private buf = Buffer.alloc(0);
  private frames: Frame[] = [];
  private wake: (() => void) | undefined;
  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = Buffer.concat([this.buf, chunk]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        this.frames.push({ type: String.fromCharCode(this.buf[0]!), body: this.buf.subarray(5, 1 + len) });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake?.();
    });
  }

  static async open(port: number, password: string): Promise<RawSession> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const s = new RawSession(socket);
    socket.write(encodeStartup({ user: 'agent', database: 'whatever' }));
    await s.until('R');
    socket.write(serialize.password(password));
    await s.until('Z');
    return s;
  }

  /** Frames up to and including the next one of `type` (bounded wait). */
  async until(type: string): Promise<Frame[]> {
    for (let i = 0; i < 400; i++) {
      const at = this.frames.findIndex((f) => f.type === type);
      if (at >= 0) return this.frames.splice(0, at + 1);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 25);
      });
    }
    throw new Error(`no '${type}' frame; got ${this.frames.map((f) => f.type).join('')}`);
  }

  send(...messages: Buffer[]): void {
    this.socket.write(Buffer.concat(messages));
  }

  close(): void {
    this.socket.end(serialize.end());
  }
}

/** DataRow values as raw bytes (null for SQL NULL). */
function rowValues(body: Buffer): Array<Buffer | null> {
  const n = body.readInt16BE(0);
  const out: Array<Buffer | null> = [];
  let at = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(at);
    at += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.subarray(at, at + len));
      at += len;
    }
  }
  return out;
}

const rowsOf = (frames: Frame[]) => frames.filter((f) => f.type === 'D').map((f) => rowValues(f.body));
const SQL = 'select id, name, ssn, card_number from customers order by id';

describe('pg-proxy: Describe Statement without Describe Portal', () => {
  it('masks column by column in text format, as when the portal is described', async () => {
    const s = await RawSession.open(h.port, token);
    try {
      s.send(serialize.parse({ name: 'q1', text: SQL, types: [] }), serialize.describe({ type: 'S', name: 'q1' }), serialize.sync());
      const described = await s.until('Z');
      assert.ok(described.some((f) => f.type === 'T'), 'the statement was described');
      s.send(serialize.bind({ statement: 'q1', values: [] }), serialize.execute({}), serialize.sync());
      const rows = rowsOf(await s.until('Z'));
      assert.equal(rows.length, 2);
      const [id, name, ssn, card] = rows[0]!.map((v) => v?.toString('utf8'));
      assert.equal(id, '1');
      assert.equal(name, 'Ada', 'unmasked columns arrive as they are');
      assert.equal(ssn, '[REDACTED:ssn]');
      assert.equal(card, '****1111');
    } finally {
      s.close();
    }
  });

  it('masks in the binary format the Bind asks for, and never lets a value through', async () => {
    const s = await RawSession.open(h.port, token);
    try {
      s.send(serialize.parse({ name: 'q2', text: SQL, types: [] }), serialize.describe({ type: 'S', name: 'q2' }), serialize.sync());
      await s.until('Z');
      s.send(serialize.bind({ statement: 'q2', values: [], binary: true }), serialize.execute({}), serialize.sync());
      const rows = rowsOf(await s.until('Z'));
      assert.equal(rows.length, 2);
      const first = rows[0]!;
      assert.equal(first[0]?.readInt32BE(0), 1, 'int4 id in binary');
      assert.equal(first[1]?.toString('utf8'), 'Ada');
      const all = JSON.stringify(rows.map((r) => r.map((v) => v?.toString('latin1'))));
      assert.doesNotMatch(all, /\d{3}-\d{2}-\d{4}/, 'no SSN in any row');
      assert.doesNotMatch(all, /4111111111111111|5500000000000004/, 'no card number in any row');
    } finally {
      s.close();
    }
  });

  it('does not apply a Describe answer to a statement parsed under the same name after it', async () => {
    const s = await RawSession.open(h.port, token);
    try {
      // One pipeline: describe statement A, re-parse the unnamed statement as B (other column
      // order), bind and run B. A's columns must not be taken for B's.
      s.send(
        serialize.parse({ text: 'select name, id from customers order by id', types: [] }),
        serialize.describe({ type: 'S', name: '' }),
        serialize.parse({ text: 'select ssn, card_number, name from customers order by id', types: [] }),
        serialize.bind({ values: [] }),
        serialize.execute({}),
        serialize.sync(),
      );
      const rows = rowsOf(await s.until('Z'));
      assert.equal(rows.length, 2);
      const all = JSON.stringify(rows.map((r) => r.map((v) => v?.toString('utf8') ?? null)));
      assert.doesNotMatch(all, /\d{3}-\d{2}-\d{4}/);
      assert.doesNotMatch(all, /4111111111111111|5500000000000004/);
      // B was never described: its origins are unknown, so its values are withheld.
      assert.deepEqual(rows[0], [null, null, null]);
    } finally {
      s.close();
    }
  });
});
