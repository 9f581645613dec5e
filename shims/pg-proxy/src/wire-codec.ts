/**
 * Encoding and decoding of the message bodies the proxy needs to read or write (§55.7).
 * Everything else is forwarded as raw bytes. Decoders throw `FrameError` on a truncated
 * or malformed body; callers treat that as a protocol violation.
 */
import { BACKEND, ERROR_FIELDS } from './message-codes.js';
import { FrameError } from './wire-frames.js';

/** Sequential reader over a message body; every read is bounds-checked. */
export class BodyReader {
  offset = 0;
  constructor(private readonly buf: Buffer) {}

  private need(n: number): void {
    if (n < 0 || this.offset + n > this.buf.length) throw new FrameError('message body truncated');
  }
  int16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  byte(): number {
    this.need(1);
    return this.buf[this.offset++] as number;
  }
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.offset, this.offset + n);
    this.offset += n;
    return v;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.offset);
    if (end < 0) throw new FrameError('unterminated string');
    const v = this.buf.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return v;
  }
  rest(): Buffer {
    const v = this.buf.subarray(this.offset);
    this.offset = this.buf.length;
    return v;
  }
  get done(): boolean {
    return this.offset >= this.buf.length;
  }
}

/** Builds one typed message: type byte, int32 length, body. */
export class MessageWriter {
  #parts: Buffer[] = [];
  #size = 0;
  private add(b: Buffer): this {
    this.#parts.push(b);
    this.#size += b.length;
    return this;
  }
  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    return this.add(b);
  }
  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.add(b);
  }
  byte(v: number): this {
    return this.add(Buffer.from([v]));
  }
  cstring(s: string): this {
    return this.add(Buffer.from(`${s}\0`, 'utf8'));
  }
  bytes(b: Buffer): this {
    return this.add(b);
  }
  /** Typed message; `type` null builds an untyped startup-phase message. */
  finish(type: string | null): Buffer {
    const header = Buffer.alloc(type === null ? 4 : 5);
    if (type !== null) header.write(type, 0, 'latin1');
    header.writeInt32BE(this.#size + 4, type === null ? 0 : 1);
    return Buffer.concat([header, ...this.#parts]);
  }
}

// ---- frontend bodies -------------------------------------------------------

export interface StartupMessage {
  protocol: number;
  params: Map<string, string>;
}

export function decodeStartup(body: Buffer): StartupMessage {
  const r = new BodyReader(body);
  const protocol = r.int32();
  const params = new Map<string, string>();
  for (let i = 0; i < 64 && !r.done; i++) {
    const key = r.cstring();
    if (key === '') break;
    params.set(key, r.cstring());
  }
  return { protocol, params };
}

export function encodeStartup(params: Record<string, string>): Buffer {
  const w = new MessageWriter().int32(196608);
  for (const [k, v] of Object.entries(params)) w.cstring(k).cstring(v);
  return w.byte(0).finish(null);
}

export interface ParseMessage {
  name: string;
  query: string;
}
export function decodeParse(body: Buffer): ParseMessage {
  const r = new BodyReader(body);
  const name = r.cstring();
  const query = r.cstring();
  const n = r.int16();
  if (n < 0) throw new FrameError('negative parameter count');
  r.bytes(n * 4);
  return { name, query };
}

/** Parse body with another query text, keeping the parameter types. */
export function encodeParse(name: string, query: string, original: Buffer): Buffer {
  const r = new BodyReader(original);
  r.cstring();
  r.cstring();
  return new MessageWriter().cstring(name).cstring(query).bytes(r.rest()).finish('P');
}

export interface BindMessage {
  portal: string;
  statement: string;
  /** Result-column format codes as sent (0 = text, 1 = binary; one code = all columns). */
  resultFormats: number[];
}
export function decodeBind(body: Buffer): BindMessage {
  const r = new BodyReader(body);
  const portal = r.cstring();
  const statement = r.cstring();
  const nf = r.int16();
  if (nf < 0) throw new FrameError('negative format count');
  for (let i = 0; i < nf; i++) r.int16();
  const np = r.int16();
  if (np < 0) throw new FrameError('negative parameter count');
  for (let i = 0; i < np; i++) {
    const len = r.int32();
    if (len > 0) r.bytes(len);
  }
  const nr = r.int16();
  if (nr < 0) throw new FrameError('negative result format count');
  const resultFormats: number[] = [];
  for (let i = 0; i < nr; i++) resultFormats.push(r.int16());
  return { portal, statement, resultFormats };
}

/** Bind body naming another statement (the rest unchanged). */
export function encodeBind(portal: string, statement: string, original: Buffer): Buffer {
  const r = new BodyReader(original);
  r.cstring();
  r.cstring();
  return new MessageWriter().cstring(portal).cstring(statement).bytes(r.rest()).finish('B');
}

export interface TargetMessage {
  /** 'S' statement or 'P' portal. */
  kind: string;
  name: string;
}
export function decodeTarget(body: Buffer): TargetMessage {
  const r = new BodyReader(body);
  const kind = String.fromCharCode(r.byte());
  if (kind !== 'S' && kind !== 'P') throw new FrameError('bad describe/close kind');
  return { kind, name: r.cstring() };
}

export function decodeExecute(body: Buffer): { portal: string; maxRows: number } {
  const r = new BodyReader(body);
  return { portal: r.cstring(), maxRows: r.int32() };
}

/** The NUL-terminated string at `start` (a message body's first field: start 0 of the body, or 5 of the whole message). */
export function decodeCString(buf: Buffer, start = 0): string {
  const end = buf.indexOf(0, start);
  if (end < 0) throw new FrameError('unterminated string');
  return buf.toString('utf8', start, end);
}

export function encodeQuery(sql: string): Buffer {
  return new MessageWriter().cstring(sql).finish('Q');
}

// ---- backend bodies --------------------------------------------------------

export interface FieldDescription {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  typeSize: number;
  typeModifier: number;
  format: number;
}

export function decodeRowDescription(body: Buffer): FieldDescription[] {
  const r = new BodyReader(body);
  const n = r.int16();
  const out: FieldDescription[] = [];
  for (let i = 0; i < n; i++) {
    out.push({
      name: r.cstring(),
      tableOid: r.int32() >>> 0,
      column: r.int16(),
      typeOid: r.int32() >>> 0,
      typeSize: r.int16(),
      typeModifier: r.int32(),
      format: r.int16(),
    });
  }
  return out;
}

/** DataRow values; null for SQL NULL. */
export function decodeDataRow(body: Buffer): Array<Buffer | null> {
  const r = new BodyReader(body);
  const n = r.int16();
  const out: Array<Buffer | null> = [];
  for (let i = 0; i < n; i++) {
    const len = r.int32();
    out.push(len < 0 ? null : r.bytes(len));
  }
  return out;
}

export function encodeDataRow(values: ReadonlyArray<Buffer | null>): Buffer {
  const w = new MessageWriter().int16(values.length);
  for (const v of values) {
    if (v === null) w.int32(-1);
    else w.int32(v.length).bytes(v);
  }
  return w.finish(BACKEND.dataRow);
}

/** ErrorResponse / NoticeResponse fields, in order (code char → value). */
export type NoticeFields = Array<[string, string]>;

export function decodeNotice(body: Buffer): NoticeFields {
  const r = new BodyReader(body);
  const out: NoticeFields = [];
  for (let i = 0; i < 64; i++) {
    const code = r.byte();
    if (code === 0) break;
    out.push([String.fromCharCode(code), r.cstring()]);
  }
  return out;
}

export function encodeNotice(type: string, fields: NoticeFields): Buffer {
  const w = new MessageWriter();
  for (const [code, value] of fields) w.bytes(Buffer.from(code, 'latin1')).cstring(value);
  return w.byte(0).finish(type);
}

export function errorResponse(sqlstate: string, message: string, severity = 'ERROR', detail?: string): Buffer {
  const fields: NoticeFields = [
    [ERROR_FIELDS.severity, severity],
    [ERROR_FIELDS.severityNonLocalized, severity],
    [ERROR_FIELDS.code, sqlstate],
    [ERROR_FIELDS.message, message],
  ];
  if (detail) fields.push([ERROR_FIELDS.detail, detail]);
  return encodeNotice(BACKEND.errorResponse, fields);
}

export function readyForQuery(status: string): Buffer {
  return new MessageWriter().bytes(Buffer.from(status, 'latin1')).finish(BACKEND.readyForQuery);
}

export function authenticationRequest(code: number): Buffer {
  return new MessageWriter().int32(code).finish(BACKEND.authentication);
}

export function parameterStatus(name: string, value: string): Buffer {
  return new MessageWriter().cstring(name).cstring(value).finish(BACKEND.parameterStatus);
}

export function backendKeyData(pid: number, secret: number): Buffer {
  return new MessageWriter().int32(pid).int32(secret).finish(BACKEND.backendKeyData);
}

export function cancelRequest(pid: number, secret: number): Buffer {
  return new MessageWriter().int32(80877102).int32(pid).int32(secret).finish(null);
}
