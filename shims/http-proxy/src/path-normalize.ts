/**
 * Request-path normalisation (RFC 3986 §6.2.2 syntax-based normalisation, §5.2.4
 * remove_dot_segments), done once so the policy decides on exactly the path that is sent
 * upstream: the proxy forwards the normalised path, never the original.
 *
 * What cannot be normalised without guessing how the upstream reads it is rejected:
 * encoded `/` and `\`, encoded control bytes, double encoding (`%252e`), raw `\` and `;`
 * (path parameters some frameworks strip), invalid UTF-8, and `..` above the root.
 */
import { ProxyError } from './errors.js';

export interface NormalizeOptions {
  /** The upstream treats paths case-insensitively: lower-case the path (decided and forwarded). */
  caseInsensitive?: boolean;
}

/** RFC 3986 §2.3 unreserved characters: percent-encoding them changes nothing, so they are decoded. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
/** Characters allowed raw in a path (pchar, §3.3) minus those rejected as ambiguous. */
const RAW_ALLOWED = /^[A-Za-z0-9\-._~!$&'()*+,=:@/%]*$/;
const HEX = '0123456789ABCDEF';

function hexByte(s: string, i: number): number | undefined {
  const a = s[i];
  const b = s[i + 1];
  if (a === undefined || b === undefined) return undefined;
  const hi = HEX.indexOf(a.toUpperCase());
  const lo = HEX.indexOf(b.toUpperCase());
  return hi < 0 || lo < 0 ? undefined : hi * 16 + lo;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decode unreserved escapes, upper-case the rest, reject ambiguous ones. */
function normalizeEncoding(raw: string): string {
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const ch = raw[i] as string;
    if (ch !== '%') {
      out += ch;
      i += 1;
      continue;
    }
    // A run of escapes: decoded together so multi-byte UTF-8 can be validated.
    const bytes: number[] = [];
    while (raw[i] === '%') {
      const b = hexByte(raw, i + 1);
      if (b === undefined) throw new ProxyError('path_invalid', 'bad percent-encoding');
      bytes.push(b);
      i += 3;
    }
    for (let k = 0; k < bytes.length; k++) {
      const b = bytes[k] as number;
      if (b === 0x2f || b === 0x5c) throw new ProxyError('path_ambiguous', 'encoded slash or backslash');
      if (b < 0x20 || b === 0x7f) throw new ProxyError('path_ambiguous', 'encoded control character');
      if (b === 0x25 && hexByte(raw, i - 3 * (bytes.length - k) + 3) !== undefined) {
        throw new ProxyError('path_ambiguous', 'double percent-encoding');
      }
    }
    const high = bytes.filter((b) => b >= 0x80);
    if (high.length) {
      try {
        utf8.decode(Uint8Array.from(bytes));
      } catch {
        throw new ProxyError('path_ambiguous', 'percent-encoded bytes are not UTF-8');
      }
    }
    for (const b of bytes) {
      const c = String.fromCharCode(b);
      out += b < 0x80 && UNRESERVED.test(c) ? c : `%${HEX[b >> 4]}${HEX[b & 15]}`;
    }
  }
  return out;
}

/** RFC 3986 §5.2.4, except that `..` above the root is an error rather than silently dropped. */
function removeDotSegments(path: string): string {
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  let trailingSlash = false;
  for (const seg of segments) {
    trailingSlash = false;
    if (seg === '.') {
      trailingSlash = true;
    } else if (seg === '..') {
      if (out.length === 0) throw new ProxyError('path_invalid', 'path climbs above the root');
      out.pop();
      trailingSlash = true;
    } else {
      out.push(seg);
    }
  }
  return '/' + out.join('/') + (trailingSlash && out.length ? '/' : '');
}

/** Normalise the raw request path (without query). Throws ProxyError with path_invalid / path_ambiguous. */
export function normalizePath(raw: string, opts: NormalizeOptions = {}): string {
  if (!raw.startsWith('/')) throw new ProxyError('path_invalid', 'path must start with /');
  if (raw.includes('\\')) throw new ProxyError('path_ambiguous', 'backslash in path');
  if (raw.includes(';')) throw new ProxyError('path_ambiguous', 'path parameters (;) are not accepted');
  if (!RAW_ALLOWED.test(raw)) throw new ProxyError('path_invalid', 'character not allowed in a path');
  let path = normalizeEncoding(raw);
  // Duplicate slashes: most servers fold them, some do not; forwarding the folded form removes the doubt.
  path = path.replace(/\/{2,}/g, '/');
  path = removeDotSegments(path);
  if (opts.caseInsensitive) path = path.toLowerCase().replace(/%[0-9a-f]{2}/g, (m) => m.toUpperCase());
  return path;
}

/** Split a raw request target into path and query; only origin-form (`/path?query`) is accepted. */
export function splitTarget(url: string): { path: string; query: string | undefined } {
  if (!url.startsWith('/')) throw new ProxyError('path_invalid', 'only origin-form request targets are accepted');
  if (url.includes('#')) throw new ProxyError('path_invalid', 'fragment in request target');
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: undefined } : { path: url.slice(0, q), query: url.slice(q + 1) };
}

/** Query strings are forwarded as sent, so they must be unambiguous too: valid escapes only. */
export function checkQuery(query: string): void {
  if (/%(?![0-9A-Fa-f]{2})/.test(query)) throw new ProxyError('query_invalid', 'bad percent-encoding in query');
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$/.test(query)) throw new ProxyError('query_invalid', 'character not allowed in a query');
}
