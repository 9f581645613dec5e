/**
 * The message framer: complete messages come out whole and in order however the byte stream
 * is cut into chunks, bytes not yet framed are kept (and handed over by `drain`), and a
 * length out of bounds is a protocol violation.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameError, MessageFramer, type Frame } from '../../shims/pg-proxy/src/wire-frames.js';

function typed(type: string, body: string): Buffer {
  const b = Buffer.from(body, 'utf8');
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(b.length + 4, 1);
  return Buffer.concat([head, b]);
}

function all(framer: MessageFramer): Frame[] {
  const out: Frame[] = [];
  for (let f = framer.next(); f; f = framer.next()) out.push(f);
  return out;
}

const summary = (f: Frame) => ({ type: f.type, body: f.body.toString('utf8'), raw: f.raw.toString('hex') });

describe('message framer', () => {
  const messages = [typed('T', 'row description'), typed('D', 'a row'), typed('C', 'SELECT 1\0'), typed('Z', 'I')];
  const stream = Buffer.concat(messages);
  const expected = messages.map((m) => ({ type: m.toString('latin1', 0, 1), body: m.subarray(5).toString('utf8'), raw: m.toString('hex') }));

  it('frames several messages of one chunk, the last one ending the chunk', () => {
    const framer = new MessageFramer('typed', 1024);
    framer.push(stream);
    assert.deepEqual(all(framer).map(summary), expected);
    assert.equal(framer.pending, 0);
  });

  it('frames the same messages from every split of the stream into two and three chunks', () => {
    for (let i = 0; i <= stream.length; i++) {
      for (const j of [i, Math.min(stream.length, i + 3), stream.length]) {
        const framer = new MessageFramer('typed', 1024);
        const got: Frame[] = [];
        for (const chunk of [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)]) {
          if (chunk.length === 0) continue;
          framer.push(chunk);
          got.push(...all(framer));
        }
        assert.deepEqual(got.map(summary), expected, `split at ${i}/${j}`);
        assert.equal(framer.pending, 0);
      }
    }
  });

  it('keeps unframed bytes: pending counts them and drain hands them over', () => {
    const framer = new MessageFramer('typed', 1024);
    const partial = Buffer.concat([messages[0]!, messages[1]!.subarray(0, 3)]);
    framer.push(partial);
    assert.equal(all(framer).length, 1);
    assert.equal(framer.pending, 3);
    assert.deepEqual(framer.drain(), messages[1]!.subarray(0, 3));
    assert.equal(framer.pending, 0);
    assert.equal(framer.next(), undefined);
  });

  it('frames untyped startup-phase messages, then typed ones after the switch', () => {
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8, 0);
    startup.writeInt32BE(80877103, 4); // SSLRequest
    const framer = new MessageFramer('awaitingStartup', 1024);
    framer.push(Buffer.concat([startup, typed('p', 'token\0')]));
    const first = framer.next();
    assert.equal(first?.type, null);
    assert.equal(first?.body.readInt32BE(0), 80877103);
    framer.state = 'typed';
    const second = framer.next();
    assert.equal(second?.type, 'p');
    assert.equal(second?.body.toString('utf8'), 'token\0');
  });

  it('refuses a length out of bounds', () => {
    const framer = new MessageFramer('typed', 16);
    framer.push(typed('Q', 'x'.repeat(32)));
    assert.throws(() => framer.next(), FrameError);
    const short = new MessageFramer('typed', 1024);
    short.push(Buffer.from([0x51, 0, 0, 0, 3]));
    assert.throws(() => short.next(), FrameError);
  });
});
