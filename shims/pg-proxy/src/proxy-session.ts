/**
 * One client connection: a state machine over the frontend protocol, an upstream
 * connection with the proxy's credential, and the decision/masking path between them.
 *
 *   awaitingStartup ─SSLRequest→ (TLS) ─┐
 *        │ ◀────────────────────────────┘
 *        ├─CancelRequest→ forward to upstream key → closed
 *        └─StartupMessage→ awaitingPassword ─PasswordMessage(token)→ connecting → ready → closed
 *
 * Denials are delivered *through* the upstream: the denied Query/Parse is replaced by a
 * statement that fails to parse (a unique marker), and the upstream's syntax error is
 * rewritten into the proxy's 42501 on the way back. That keeps the protocol order of every
 * pipelined response exact and makes the upstream abort the transaction, as a real error would.
 */
import { hash, randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Decision, DecideRequest, SqlStatement } from '../../../pdp-server/src/contract.js';
import type { AllowLease } from '../../pdp-client/src/index.js';
import type { MaskMethod } from '../../masking/src/mask-rules.js';
import type { ColumnCatalog } from './column-catalog.js';
import {
  cachedFieldActions,
  fieldActions,
  isEmptyPlan,
  maskCopyTextRow,
  maskDataRow,
  maskNoticeFields,
  mergePlans,
  NO_MASK,
  planFor,
  writesTaintedData,
  type FieldAction,
  type MaskPlan,
} from './column-masker.js';
import { AUTH, BACKEND, ERROR_FIELDS, FRONTEND, SQLSTATE, STARTUP_CODES, TX_STATUS } from './message-codes.js';
import { newSessionObjects, type SessionObjects, type SummaryResult } from './sql-summary.js';
import type { SummaryCache } from './summary-cache.js';
import { connectUpstream, upstreamAddress, UpstreamError, type UpstreamConnection } from './upstream-connection.js';
import {
  authenticationRequest,
  BodyReader,
  backendKeyData,
  cancelRequest,
  decodeBind,
  decodeCString,
  decodeDataRow,
  decodeExecute,
  decodeNotice,
  decodeParse,
  decodeRowDescription,
  decodeStartup,
  decodeTarget,
  encodeBind,
  encodeDataRow,
  encodeNotice,
  encodeParse,
  encodeQuery,
  errorResponse,
  readyForQuery,
  type FieldDescription,
} from './wire-codec.js';
import { FrameError, MessageFramer, type Frame } from './wire-frames.js';
import { newProcessId, workerOfProcessId } from './worker-cluster.js';

/** Anything that can answer a decision request (the PDP client in production). */
export interface Decider {
  decide(req: DecideRequest): Promise<Decision>;
  /**
   * An allow decision for exactly this request from a local cache, answered synchronously,
   * or undefined (then `decide` is asked), with the terms of its reuse. Optional: saves a
   * promise round per statement.
   */
  cachedAllowLease?(req: DecideRequest): AllowLease | undefined;
  /** Whether a lease still holds (its ttl has not ended and the cache was not dropped since). */
  leaseValid?(lease: AllowLease): boolean;
  /** Report one more use of a leased decision (every use reaches the decision log); leases are reused only with it. */
  recordCachedUse?(req: DecideRequest, decision: Decision): void;
  /** Long-poll an approval; needed only to hold statements (`approvalWaitS` > 0). Failure reads as `pending`. */
  waitApproval?(id: string, waitS: number): Promise<'approved' | 'denied' | 'expired' | 'pending'>;
}

/**
 * Fingerprint of the login check: a decision request with no statements. The PDP verifies
 * the token (signature, expiry, revocation) before any policy runs, so its error code tells
 * whether the token is acceptable; the policy's own answer (it denies an empty request) is
 * irrelevant here.
 */
export const LOGIN_CHECK_FINGERPRINT = 'scopegate:login';
/** Decision codes that mean "the PDP could not judge the token", not "the token is bad". */
const UNAVAILABLE_CODES = new Set(['pdp_unavailable', 'token_keys_unavailable']);
/** One long-poll is capped by the PDP at 60 s; longer holds poll again. */
const APPROVAL_POLL_MAX_S = 60;

export interface SessionConfig {
  resource: string;
  upstream: { host: string; port: number; database: string; user: string; password?: string | undefined };
  tls: tls.SecureContext | undefined;
  allowPlaintextNonLoopback: boolean;
  maxMessageBytes: number;
  startupTimeoutMs: number;
  decider: Decider;
  /** Hold a statement that needs approval up to this long (0: fail at once with the approval id). */
  approvalWaitS: number;
  catalog: ColumnCatalog;
  /** Statement summaries, shared by the sessions of the process. */
  summaries: SummaryCache;
  /** Where the process-wide cancel keys live. */
  cancelKeys: Map<string, ProxySession>;
  /** Index of this process among the proxy's workers; carried in the BackendKeyData process id. */
  workerIndex: number;
  /** Pass a CancelRequest for a key of another worker on to that worker (multi-process only). */
  forwardCancel: ((pid: number, secret: number) => void) | undefined;
  log: (event: Record<string, unknown>) => void;
  /** Pass the per-statement `decision` events to `log` (false when nobody reads them: they cost CPU per statement). */
  logDecisions: boolean;
}

/** Startup parameters passed upstream; everything else is dropped (`options` could set any GUC). */
const FORWARDED_PARAMS = new Set(['application_name', 'client_encoding', 'datestyle', 'timezone', 'extra_float_digits', 'intervalstyle']);
const REFUSED_PARAMS = new Set(['replication', 'options']);
const STARTUP_MAX_BYTES = 10_000;
const MAX_QUEUED_FRAMES = 1024;
/** Leased decisions kept per session (statement shapes in use); the map starts over beyond it. */
const MAX_LEASES = 256;

type State = 'awaitingStartup' | 'awaitingPassword' | 'connecting' | 'ready' | 'closed';

interface StatementInfo {
  statements: SqlStatement[];
  plan: MaskPlan;
  /** The summary's fingerprint, to decide again at each later Bind. */
  fingerprint: string;
  /** The exact SQL text: a request that reaches the PDP carries its SHA-256 (approvals are bound to it). */
  text: string;
  /** Sequence number of the batch (Sync/Query) in which it was decided. */
  batch: number;
  /** This Parse's result columns once a Describe of the statement came back (shared by copies). */
  shape: StatementShape;
}

/**
 * The columns a Describe Statement reported for one Parse. A holder of its own, made per
 * Parse, so a late answer can only ever describe the statement it was asked about, even if
 * the client has parsed another statement under the same name since.
 */
interface StatementShape {
  fields?: FieldDescription[];
}

/**
 * A statement's described columns as a portal bound with `resultFormats` returns them
 * (Describe Statement reports every format as 0: formats are chosen at Bind). The server's
 * rule: no codes = all text, one code = all columns, else one per column (another count is
 * an error at Bind, and then no rows come).
 */
function withResultFormats(fields: FieldDescription[], formats: number[]): FieldDescription[] | undefined {
  if (formats.length > 1 && formats.length !== fields.length) return undefined;
  return fields.map((f, i) => ({ ...f, format: formats.length === 0 ? 0 : (formats.length === 1 ? formats[0] : formats[i]) ?? 0 }));
}

type Verdict = { ok: true; plan: MaskPlan } | { ok: false; decisionId: string; message: string };
type SummaryOk = Extract<SummaryResult, { ok: true }>;
/** The verdict for a text with no statements (nothing to decide). */
const ALLOW_NO_MASK: Verdict = Object.freeze({ ok: true, plan: NO_MASK });

/**
 * An allow the decider leased for one statement list, and the request it was granted for.
 * Each reuse is reported with that request instead of a new one per statement: reuses are
 * counted per decision and session, and one request (the reporter keeps the first it sees)
 * stands for all of them anyway.
 */
interface HeldLease {
  lease: AllowLease;
  fingerprint: string;
  verdict: Verdict;
  req: DecideRequest;
}

/** Whether any result column has a mask action. */
function anyAction(actions: readonly FieldAction[]): boolean {
  for (let i = 0; i < actions.length; i++) if (actions[i] !== undefined) return true;
  return false;
}
const NO_ACTIONS: FieldAction[] = Object.freeze([]) as unknown as FieldAction[];

/**
 * A bound portal as the proxy knows it: its own statement's mask plan and, once a
 * Describe of the portal has come back, its columns. Rows of an Execute are masked with
 * the plan of the portal executed, never with whatever RowDescription came last (portals
 * interleave and resume across batches after PortalSuspended).
 */
interface PortalState {
  /** False for a portal the proxy did not see bound (e.g. a SQL cursor reached by Execute): its rows are withheld. */
  known: boolean;
  plan: MaskPlan;
  fields?: FieldDescription[];
  actions?: FieldAction[];
}

/** An extended-protocol message whose response carries row shapes or rows, in send order. */
type PortalOp = { kind: 'describePortal' | 'execute'; portal: PortalState } | { kind: 'describeStatement'; shape: StatementShape | undefined };

interface Batch {
  plan: MaskPlan;
  statements: SqlStatement[];
  /** Describe/Execute messages of the batch whose responses have not completed yet. */
  ops: PortalOp[];
}
const EMPTY_BATCH: Batch = Object.freeze({ plan: NO_MASK, statements: [], ops: Object.freeze([]) as unknown as PortalOp[] }) as unknown as Batch;

function joinBatch(a: Batch, b: { plan: MaskPlan; statements: SqlStatement[] }): Batch {
  // Batch statement lists are only read, so the first statement list can stand as it is.
  if (a === EMPTY_BATCH) return { plan: b.plan, statements: b.statements, ops: [] };
  return { plan: mergePlans(a.plan, b.plan), statements: [...a.statements, ...b.statements], ops: a.ops };
}

interface DenyMarker {
  error: Buffer;
}

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Loopback peers may send the token without TLS (it never leaves the machine). */
export function isLoopbackAddress(addr: string | undefined): boolean {
  if (!addr) return false;
  // IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is how a dual-stack listener reports IPv4 peers.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)?.[1];
  if (mapped) return LOOPBACK.check(mapped, 'ipv4');
  const family = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : undefined;
  return family !== undefined && LOOPBACK.check(addr, family);
}

/** Without TLS, the token may be read only from loopback peers, or from anyone when explicitly allowed. */
export function plaintextLoginAllowed(addr: string | undefined, allowPlaintextNonLoopback: boolean): boolean {
  return allowPlaintextNonLoopback || isLoopbackAddress(addr);
}

export class ProxySession {
  readonly id = randomUUID();
  state: State = 'awaitingStartup';
  readonly proxyPid: number;
  readonly proxySecret = randomBytes(4).readInt32BE();

  #client: net.Socket | tls.TLSSocket;
  readonly #clientAddr: string;
  readonly #peerAddress: string | undefined;
  readonly #framer: MessageFramer;
  #upstream: UpstreamConnection | undefined;
  #token = '';
  #startupParams = new Map<string, string>();
  #startupTimer: NodeJS.Timeout | undefined;

  /** Frontend frames waiting for the serialized decision loop. */
  #queue: Frame[] = [];
  #pumping = false;

  readonly #objects: SessionObjects = newSessionObjects();
  /**
   * Cached allows in use, by statement list: the session's token, resource and context are
   * fixed, so a (frozen) statement list and its fingerprint are the rest of the PDP client's
   * cache key. Reused only while the decider says the lease holds (ttl, no revocation since).
   */
  readonly #leases = new Map<readonly SqlStatement[], HeldLease>();
  /** The parts of every decision request that are fixed for the session. */
  readonly #resource: DecideRequest['resource'];
  readonly #context: NonNullable<DecideRequest['context']>;
  readonly #statements = new Map<string, StatementInfo>();
  readonly #portals = new Map<string, PortalState>();
  /** Mask plan and statements of messages forwarded since the last Sync (the batch being built). */
  #open: Batch = EMPTY_BATCH;
  /** Counts Sync/Query messages: a statement decided in the current batch needs no second decision at Bind. */
  #batchSeq = 0;
  /** One batch per forwarded Sync/Query whose ReadyForQuery has not come back yet. */
  readonly #inflight: Batch[] = [];
  /** Markers of denied messages whose syntax error is still to come back. */
  readonly #denials = new Map<string, DenyMarker>();

  // backend side
  #backendQueue: Frame[] = [];
  #backendPumping = false;
  #fields: FieldDescription[] = [];
  #actions: FieldAction[] = NO_ACTIONS;
  /** The last RowDescription body decoded for rows (a copy) and its fields: the same statement shape repeats it byte for byte. */
  #rowDescBody: Buffer | undefined;
  #rowDescFields: FieldDescription[] = [];
  /** Messages for the client collected by one backend loop pass (one write). */
  readonly #out: Buffer[] = [];
  #rowPlan: MaskPlan = NO_MASK;
  /** A RowDescription has been seen for the rows now arriving. */
  #described = false;
  #copyMethods: Array<MaskMethod | undefined> | undefined;
  #copyEvery: MaskMethod | undefined;
  #copyLabels: string[] = [];

  constructor(
    socket: net.Socket,
    private readonly cfg: SessionConfig,
  ) {
    this.proxyPid = newProcessId(cfg.workerIndex);
    this.#client = socket;
    this.#clientAddr = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? 0}`;
    this.#peerAddress = socket.remoteAddress;
    this.#resource = Object.freeze({ kind: 'sql' as const, name: cfg.resource });
    this.#context = Object.freeze({ session_id: this.id, client_addr: this.#clientAddr, shim: 'pg-proxy' });
    this.#framer = new MessageFramer('awaitingStartup', STARTUP_MAX_BYTES);
    socket.setNoDelay(true);
    this.#attachClient(socket);
    // Clients that stall before authenticating are cut off.
    this.#startupTimer = setTimeout(() => this.close('startup timeout'), cfg.startupTimeoutMs);
  }

  #attachClient(socket: net.Socket | tls.TLSSocket): void {
    socket.on('data', (chunk: Buffer) => this.#onClientData(chunk));
    socket.on('error', () => this.close('client socket error'));
    socket.on('close', () => this.close('client closed'));
  }

  close(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    if (this.#startupTimer) clearTimeout(this.#startupTimer);
    this.cfg.cancelKeys.delete(`${this.proxyPid}:${this.proxySecret}`);
    this.cfg.log({ event: 'session_closed', session_id: this.id, reason });
    this.#client.destroy();
    this.#upstream?.socket.destroy();
    this.#queue = [];
    this.#backendQueue = [];
  }

  /** Forward a CancelRequest for this session to the upstream with the real key. */
  cancelUpstream(): void {
    const up = this.#upstream;
    if (!up) return;
    const s = net.connect(upstreamAddress(this.cfg.upstream.host, this.cfg.upstream.port), () => s.end(cancelRequest(up.pid, up.secret)));
    s.on('error', () => s.destroy());
    s.setTimeout(5000, () => s.destroy());
  }

  // ---- client → proxy ------------------------------------------------------

  #onClientData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    try {
      this.#framer.push(chunk);
      for (let f = this.#framer.next(); f; f = this.#framer.next()) {
        if (this.#framer.state === 'awaitingStartup') this.#onStartupFrame(f);
        else this.#queue.push(f);
        if ((this.state as State) === 'closed' || this.#framer.state === 'awaitingStartup') break;
      }
    } catch (err) {
      this.#fatal(err instanceof FrameError ? SQLSTATE.protocolViolation : SQLSTATE.programLimitExceeded, err instanceof FrameError ? 'invalid message' : 'message too large');
      return;
    }
    if (this.#queue.length > MAX_QUEUED_FRAMES) this.#client.pause();
    this.#pump();
  }

  #fatal(sqlstate: string, message: string): void {
    if (this.state === 'closed') return;
    this.#client.write(errorResponse(sqlstate, message, 'FATAL'));
    this.#client.end();
    this.close(message);
  }

  #onStartupFrame(f: Frame): void {
    const r = new BodyReader(f.body);
    const code = r.int32();
    if (code === STARTUP_CODES.sslRequest) {
      if (!this.cfg.tls || this.#client instanceof tls.TLSSocket) {
        this.#client.write('N');
        return;
      }
      if (this.#framer.pending > 0) return this.#fatal(SQLSTATE.protocolViolation, 'data after SSLRequest');
      this.#client.write('S');
      const raw = this.#client;
      raw.removeAllListeners('data');
      raw.removeAllListeners('close');
      raw.removeAllListeners('error');
      const secure = new tls.TLSSocket(raw, { isServer: true, secureContext: this.cfg.tls });
      this.#client = secure;
      this.#attachClient(secure);
      return;
    }
    if (code === STARTUP_CODES.gssEncRequest) {
      this.#client.write('N');
      return;
    }
    if (code === STARTUP_CODES.cancelRequest) {
      const pid = r.int32();
      const secret = r.int32();
      const owner = this.cfg.cancelKeys.get(`${pid}:${secret}`);
      const forward = owner === undefined && workerOfProcessId(pid) !== this.cfg.workerIndex ? this.cfg.forwardCancel : undefined;
      if (owner) owner.cancelUpstream();
      else forward?.(pid, secret);
      this.cfg.log({ event: 'cancel_request', routed: owner ? 'local' : forward ? 'forwarded' : 'unknown' });
      this.close('cancel request');
      return;
    }
    if (code !== STARTUP_CODES.protocolV3) return this.#fatal(SQLSTATE.featureNotSupported, 'unsupported protocol version');
    const startup = decodeStartup(f.body);
    for (const key of startup.params.keys()) {
      if (REFUSED_PARAMS.has(key.toLowerCase())) return this.#fatal(SQLSTATE.featureNotSupported, `startup parameter "${key}" is not allowed`);
    }
    this.#startupParams = startup.params;
    if (!(this.#client instanceof tls.TLSSocket) && !plaintextLoginAllowed(this.#peerAddress, this.cfg.allowPlaintextNonLoopback)) {
      return this.#fatal(SQLSTATE.invalidAuthorizationSpecification, 'TLS is required: the token must not travel in plaintext');
    }
    this.#framer.state = 'typed';
    this.#framer.maxLength = STARTUP_MAX_BYTES + 16 * 1024;
    this.state = 'awaitingPassword';
    this.#client.write(authenticationRequest(AUTH.cleartextPassword));
  }

  /**
   * The frontend loop: frames in order, one at a time. Written without async/await so the
   * common case (every frame decided from the local caches) runs synchronously to the end,
   * with no promise per data chunk; a frame that must wait (a PDP round trip, an approval,
   * back-pressure) continues the loop when it settles, with the loop still marked busy.
   */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    // Frames decided in one go (Parse/Bind/Describe/Execute/Sync of a pipelined batch) leave
    // in one write instead of one syscall each; uncorked before any wait on an approval. A
    // single frame (a simple Query) is written directly: corking it would only add work.
    const up = this.#queue.length > 1 ? this.#upstream : undefined;
    up?.socket.cork();
    this.#continuePump(up);
  }

  #continuePump(up: UpstreamConnection | undefined): void {
    try {
      while (this.#queue.length && this.state !== 'closed') {
        const f = this.#queue.shift() as Frame;
        const pending = this.#onFrontend(f);
        if (this.#queue.length < MAX_QUEUED_FRAMES / 2 && this.#client.isPaused()) this.#client.resume();
        if (pending) {
          pending.then(
            () => this.#continuePump(up),
            (err: unknown) => this.#endPump(up, err),
          );
          return;
        }
      }
    } catch (err) {
      return this.#endPump(up, err);
    }
    this.#endPump(up, undefined);
  }

  #endPump(up: UpstreamConnection | undefined, err: unknown): void {
    if (err !== undefined) {
      if (err instanceof FrameError) this.#fatal(SQLSTATE.protocolViolation, 'invalid message');
      else {
        this.cfg.log({ event: 'session_error', session_id: this.id, error: (err as Error).message });
        this.#fatal(SQLSTATE.connectionFailure, 'proxy error');
      }
    }
    this.#pumping = false;
    up?.socket.uncork();
  }

  #onFrontend(f: Frame): Promise<void> | void {
    if (this.state === 'awaitingPassword') return this.#onPassword(f);
    if (this.state !== 'ready') return;
    switch (f.type) {
      case FRONTEND.query:
        return this.#onQuery(f);
      case FRONTEND.parse:
        return this.#onParse(f);
      case FRONTEND.bind:
        return this.#onBind(f);
      case FRONTEND.close: {
        const t = decodeTarget(f.body);
        if (t.kind === 'S') this.#statements.delete(t.name);
        else this.#portals.delete(t.name);
        return this.#send(f.raw);
      }
      case FRONTEND.describe: {
        const t = decodeTarget(f.body);
        this.#addOp(t.kind === 'S' ? { kind: 'describeStatement', shape: this.#statements.get(t.name)?.shape } : { kind: 'describePortal', portal: this.#portal(t.name) });
        return this.#send(f.raw);
      }
      case FRONTEND.execute:
        this.#addOp({ kind: 'execute', portal: this.#portal(decodeExecute(f.body).portal) });
        return this.#send(f.raw);
      case FRONTEND.flush:
        return this.#send(f.raw);
      case FRONTEND.sync:
        this.#batchSeq++;
        this.#inflight.push(this.#open);
        this.#open = EMPTY_BATCH;
        return this.#send(f.raw);
      case FRONTEND.copyData:
      case FRONTEND.copyDone:
      case FRONTEND.copyFail:
        return this.#send(f.raw);
      case FRONTEND.functionCall:
        // The fast-path function call bypasses SQL and so the policy: refused. Delivered as a
        // denied query so the client still gets its ReadyForQuery in order.
        return this.#sendDenied(FRONTEND.query, randomUUID(), 'the FunctionCall message is not allowed through the proxy', undefined);
      case FRONTEND.terminate:
        this.#upstream?.socket.end(f.raw);
        this.#client.end();
        this.close('terminate');
        return;
      default:
        return this.#fatal(SQLSTATE.protocolViolation, 'unexpected message type');
    }
  }

  async #onPassword(f: Frame): Promise<void> {
    if (f.type !== FRONTEND.password) return this.#fatal(SQLSTATE.protocolViolation, 'expected a password message');
    this.#token = decodeCString(f.body);
    if (this.#token === '') return this.#fatal(SQLSTATE.invalidPassword, 'a scopegate token is required as the password');
    if (!(await this.#checkToken())) return;
    return this.#connect();
  }

  /**
   * Ask the PDP once at login so a bad, expired or revoked token fails the login with 28P01
   * instead of every statement later. Statements are still decided one by one: a token
   * revoked mid-session is caught by those decisions.
   */
  async #checkToken(): Promise<boolean> {
    const d = await this.cfg.decider.decide({
      token: this.#token,
      resource: { kind: 'sql', name: this.cfg.resource },
      request: { sql: { statements: [], fingerprint: LOGIN_CHECK_FINGERPRINT } },
      context: { session_id: this.id, client_addr: this.#clientAddr, shim: 'pg-proxy' },
    });
    this.cfg.log({ event: 'login_check', session_id: this.id, decision_id: d.decision_id, code: d.code ?? null });
    if (d.code === undefined) return true;
    if (UNAVAILABLE_CODES.has(d.code) || !d.code.startsWith('token_')) {
      // Fail closed: a token nobody could check is not let in.
      this.#fatal(SQLSTATE.connectionFailure, `the token could not be checked (decision_id=${d.decision_id})`);
      return false;
    }
    this.#fatal(SQLSTATE.invalidPassword, `scopegate token rejected: ${d.code} (decision_id=${d.decision_id})`);
    return false;
  }

  async #connect(): Promise<void> {
    this.state = 'connecting';
    const params: Record<string, string> = { search_path: 'public' };
    for (const [k, v] of this.#startupParams) if (FORWARDED_PARAMS.has(k.toLowerCase())) params[k] = v;
    try {
      this.#upstream = await connectUpstream({ ...this.cfg.upstream, params, maxMessageBytes: 1024 * 1024 * 1024 });
    } catch (err) {
      this.cfg.log({ event: 'upstream_connect_failed', session_id: this.id, error: (err as Error).message, sqlstate: (err as UpstreamError).sqlstate });
      return this.#fatal(SQLSTATE.connectionFailure, 'the database is not available');
    }
    if ((this.state as State) === 'closed') {
      this.#upstream.socket.destroy();
      return;
    }
    if (this.#startupTimer) clearTimeout(this.#startupTimer);
    this.#startupTimer = undefined;
    const up = this.#upstream;
    this.#framer.maxLength = this.cfg.maxMessageBytes;
    this.cfg.cancelKeys.set(`${this.proxyPid}:${this.proxySecret}`, this);
    const out: Buffer[] = [authenticationRequest(AUTH.ok), ...up.parameterStatuses.map((p) => p.raw), backendKeyData(this.proxyPid, this.proxySecret), readyForQuery(TX_STATUS.idle)];
    this.#client.write(Buffer.concat(out));
    this.state = 'ready';
    this.cfg.log({ event: 'session_started', session_id: this.id, client_addr: this.#clientAddr, tls: this.#client instanceof tls.TLSSocket });
    up.receive((chunk: Buffer) => this.#onUpstreamData(chunk));
    up.socket.on('error', () => this.#fatal(SQLSTATE.connectionFailure, 'the database connection failed'));
    up.socket.on('close', () => this.#fatal(SQLSTATE.connectionFailure, 'the database closed the connection'));
    this.#client.on('drain', () => up.socket.resume());
    up.socket.resume();
    const leftover = up.framer.drain();
    if (leftover.length) this.#onUpstreamData(leftover);
  }

  /** The state of a portal by name; one the proxy did not bind is unknown, so its rows are withheld. */
  #portal(name: string): PortalState {
    return this.#portals.get(name) ?? { known: false, plan: NO_MASK };
  }

  #addOp(op: PortalOp): void {
    if (this.#open === EMPTY_BATCH) this.#open = { plan: NO_MASK, statements: [], ops: [] };
    this.#open.ops.push(op);
  }

  /** Forward to the upstream; a promise only when its buffer is full (back-pressure on the frontend loop). */
  #send(raw: Buffer): Promise<void> | void {
    const up = this.#upstream;
    if (!up) return;
    if (!up.socket.write(raw)) return new Promise<void>((resolve) => up.socket.once('drain', resolve));
  }

  // ---- decisions -----------------------------------------------------------

  /** Decide and plan masking for one summarised SQL text; synchronous when the decision comes from the decider's local cache. */
  #decideSummary(summary: SummaryOk, sql: string): Verdict | Promise<Verdict> {
    if (summary.statements.length === 0) return ALLOW_NO_MASK;
    return this.#decideStatements(summary.statements, summary.fingerprint, sql);
  }

  /** A decision request for these statements; it carries the SHA-256 of the exact text (approvals are bound to it). */
  #decisionRequest(statements: SqlStatement[], fingerprint: string, text: string): DecideRequest {
    return {
      token: this.#token,
      resource: this.#resource,
      request: { sql: { statements, fingerprint, text_sha256: hash('sha256', text, 'hex') } },
      context: this.#context,
    };
  }

  /** Ask the PDP about summarised statements; synchronous on an allow from the decider's local cache. */
  #decideStatements(statements: SqlStatement[], fingerprint: string, text: string): Verdict | Promise<Verdict> {
    const held = this.#leases.get(statements);
    const decider = this.cfg.decider;
    if (held !== undefined && held.fingerprint === fingerprint && decider.recordCachedUse && decider.leaseValid?.(held.lease)) {
      // A reuse of a cached allow is still a decision use: it goes to the decision log.
      decider.recordCachedUse(held.req, held.lease.decision);
      this.#logDecision(held.lease.decision, fingerprint);
      return held.verdict;
    }
    const req = this.#decisionRequest(statements, fingerprint, text);
    const lease = decider.cachedAllowLease?.(req);
    if (lease) {
      this.#logDecision(lease.decision, fingerprint);
      const verdict = this.#verdict(lease.decision, statements);
      // Only immutable lists (the summariser's) are kept: identity then means content.
      if (Object.isFrozen(statements)) {
        if (this.#leases.size >= MAX_LEASES) this.#leases.clear();
        this.#leases.set(statements, { lease, fingerprint, verdict, req });
      }
      return verdict;
    }
    return this.#decideStatementsRemote(req, statements, fingerprint);
  }

  /** The full path: the PDP (holding for an approval when configured). */
  async #decideStatementsRemote(req: DecideRequest, statements: SqlStatement[], fingerprint: string): Promise<Verdict> {
    let decision = await this.cfg.decider.decide(req);
    this.#logDecision(decision, fingerprint);
    if (decision.effect === 'approval_required') {
      const id = decision.obligations.approval?.id;
      const held = id ? await this.#holdForApproval(id) : 'pending';
      if (held === 'approved') {
        // The PDP now finds the granted approval for this exact request and subject.
        decision = await this.cfg.decider.decide(req);
        this.#logDecision(decision, fingerprint);
      } else if (held !== 'pending') {
        return { ok: false, decisionId: decision.decision_id, message: `approval ${held} (approval_id=${id ?? 'unknown'})` };
      }
    }
    return this.#verdict(decision, statements);
  }

  #verdict(decision: Decision, statements: SqlStatement[]): Verdict {
    if (decision.effect === 'approval_required') {
      const approval = decision.obligations.approval;
      return { ok: false, decisionId: decision.decision_id, message: `approval required (approval_id=${approval?.id ?? 'unknown'}); retry once it is approved` };
    }
    if (decision.effect !== 'allow' || decision.allow !== true) {
      return { ok: false, decisionId: decision.decision_id, message: decision.code ? `denied (${decision.code})` : 'denied by policy' };
    }
    const plan = planFor(statements, decision.obligations.mask);
    if (writesTaintedData(plan, statements)) {
      return { ok: false, decisionId: decision.decision_id, message: 'the statement writes data read from masked columns' };
    }
    return { ok: true, plan };
  }

  #logDecision(decision: Decision, fingerprint: string): void {
    if (!this.cfg.logDecisions) return;
    this.cfg.log({
      event: 'decision',
      session_id: this.id,
      decision_id: decision.decision_id,
      effect: decision.effect,
      fingerprint,
      ...(decision.obligations.approval ? { approval_id: decision.obligations.approval.id } : {}),
    });
  }

  /**
   * Wait (bounded by approvalWaitS) for an approver to decide. The session's frontend loop
   * is blocked meanwhile, so later pipelined messages keep their order behind the held one.
   */
  async #holdForApproval(id: string): Promise<'approved' | 'denied' | 'expired' | 'pending'> {
    const waiter = this.cfg.decider.waitApproval?.bind(this.cfg.decider);
    if (!waiter || this.cfg.approvalWaitS <= 0) return 'pending';
    // Frames already forwarded must not wait behind the hold.
    this.#upstream?.socket.uncork();
    const deadline = Date.now() + this.cfg.approvalWaitS * 1000;
    this.cfg.log({ event: 'approval_hold', session_id: this.id, approval_id: id, wait_s: this.cfg.approvalWaitS });
    // Bounded: each round waits ≥ 1 s (or ends), and the deadline is fixed.
    for (let round = 0; round < 10_000 && this.state !== 'closed'; round++) {
      const left = Math.ceil((deadline - Date.now()) / 1000);
      if (left <= 0) break;
      const status = await waiter(id, Math.min(left, APPROVAL_POLL_MAX_S));
      if (status !== 'pending') return status;
    }
    return 'pending';
  }

  /** Replace a denied Query/Parse/Bind by one the upstream rejects with our marker in the message. */
  #sendDenied(kind: string, decisionId: string, reason: string, original: Frame | undefined): Promise<void> | void {
    const marker = `scopegate_denied_${randomBytes(12).toString('hex')}`;
    const error = errorResponse(SQLSTATE.insufficientPrivilege, `permission denied by scopegate (decision_id=${decisionId})`, 'ERROR', reason);
    this.#denials.set(marker, { error });
    if (kind === FRONTEND.query) {
      this.#batchSeq++;
      this.#inflight.push(this.#open);
      this.#open = EMPTY_BATCH;
      return this.#send(encodeQuery(`${marker} ${marker}`));
    }
    if (kind === FRONTEND.parse && original) {
      const p = decodeParse(original.body);
      return this.#send(encodeParse(p.name, `${marker} ${marker}`, original.body));
    }
    if (kind === FRONTEND.bind && original) {
      const b = decodeBind(original.body);
      return this.#send(encodeBind(b.portal, marker, original.body));
    }
  }

  // The frontend handlers below make no closure unless a decision is pending (the `…Later`
  // methods): they run for every statement.

  #onQuery(f: Frame): Promise<void> | void {
    // The text starts after the type byte and length: read from `raw`, no body view needed.
    const sql = decodeCString(f.raw, 5);
    const summary = this.cfg.summaries.summarize(sql, this.#objects);
    if (!summary.ok) return this.#sendRefused(FRONTEND.query, summary.reason, f);
    const v = this.#decideSummary(summary, sql);
    return v instanceof Promise ? this.#queryLater(f, summary, v) : this.#forwardQuery(f, summary, v);
  }

  #queryLater(f: Frame, summary: SummaryOk, v: Promise<Verdict>): Promise<void> {
    return v.then((r) => this.#forwardQuery(f, summary, r));
  }

  #forwardQuery(f: Frame, summary: SummaryOk, v: Verdict): Promise<void> | void {
    if (!v.ok) return this.#sendDenied(FRONTEND.query, v.decisionId, v.message, f);
    summary.apply(this.#objects);
    // A simple Query is its own batch: it ends with ReadyForQuery.
    this.#batchSeq++;
    this.#inflight.push(joinBatch(this.#open, { plan: v.plan, statements: summary.statements }));
    this.#open = EMPTY_BATCH;
    return this.#send(f.raw);
  }

  #onParse(f: Frame): Promise<void> | void {
    const p = decodeParse(f.body);
    const summary = this.cfg.summaries.summarize(p.query, this.#objects);
    if (!summary.ok) {
      this.#statements.delete(p.name);
      return this.#sendRefused(FRONTEND.parse, summary.reason, f);
    }
    const v = this.#decideSummary(summary, p.query);
    return v instanceof Promise ? this.#parseLater(f, p.name, p.query, summary, v) : this.#forwardParse(f, p.name, p.query, summary, v);
  }

  #parseLater(f: Frame, name: string, sql: string, summary: SummaryOk, v: Promise<Verdict>): Promise<void> {
    return v.then((r) => this.#forwardParse(f, name, sql, summary, r));
  }

  #forwardParse(f: Frame, name: string, sql: string, summary: SummaryOk, v: Verdict): Promise<void> | void {
    if (!v.ok) {
      this.#statements.delete(name);
      return this.#sendDenied(FRONTEND.parse, v.decisionId, v.message, f);
    }
    summary.apply(this.#objects);
    const info: StatementInfo = { statements: summary.statements, plan: v.plan, fingerprint: summary.fingerprint, text: sql, batch: this.#batchSeq, shape: {} };
    this.#statements.set(name, info);
    this.#open = joinBatch(this.#open, info);
    return this.#send(f.raw);
  }

  /** A text the summariser refused (it cannot be judged): denied without asking the PDP. */
  #sendRefused(kind: string, reason: string, f: Frame): Promise<void> | void {
    const decisionId = randomUUID();
    this.cfg.log({ event: 'statement_refused', session_id: this.id, decision_id: decisionId, reason });
    return this.#sendDenied(kind, decisionId, reason, f);
  }

  #onBind(f: Frame): Promise<void> | void {
    const b = decodeBind(f.body);
    // A statement prepared with SQL PREPARE is also bindable; it was decided when prepared.
    const info = this.#statements.get(b.statement);
    if (!info) {
      this.#portals.delete(b.portal);
      // Unknown to us (or prepared with SQL PREPARE, known without its mask plan): refused.
      return this.#sendDenied(FRONTEND.bind, randomUUID(), 'bind to a statement the proxy did not see prepared', f);
    }
    if (info.batch !== this.#batchSeq && info.statements.length > 0) {
      // A statement prepared earlier is decided again at each use (the PDP client's local
      // cache answers within the decision's ttl_ms), so a revoked token or a changed policy
      // also stops statements prepared before the change.
      const v = this.#decideStatements(info.statements, info.fingerprint, info.text);
      return v instanceof Promise ? this.#bindLater(f, b, info, v) : this.#forwardBind(f, b, info, v);
    }
    return this.#forwardBind(f, b, info, undefined);
  }

  #bindLater(f: Frame, b: { portal: string; statement: string; resultFormats: number[] }, info: StatementInfo, v: Promise<Verdict>): Promise<void> {
    return v.then((r) => this.#forwardBind(f, b, info, r));
  }

  /** Forward a Bind; `v` is the fresh decision for a statement prepared in an earlier batch. */
  #forwardBind(f: Frame, b: { portal: string; statement: string; resultFormats: number[] }, decided: StatementInfo, v: Verdict | undefined): Promise<void> | void {
    let info = decided;
    if (v && !v.ok) {
      this.#portals.delete(b.portal);
      return this.#sendDenied(FRONTEND.bind, v.decisionId, v.message, f);
    }
    if (v && v.plan !== info.plan) {
      info = { ...info, plan: v.plan };
      this.#statements.set(b.statement, info);
    }
    const portal: PortalState = { known: true, plan: info.plan };
    // Clients that describe the statement but not the portal (JDBC-style) still get their
    // rows masked column by column instead of withheld: the portal's columns are the
    // statement's, in the formats this Bind asks for. A Describe Portal, if one comes, wins.
    const described = info.shape.fields;
    if (described && !isEmptyPlan(info.plan)) {
      const fields = withResultFormats(described, b.resultFormats);
      if (fields) portal.fields = fields;
    }
    this.#portals.set(b.portal, portal);
    this.#open = joinBatch(this.#open, info);
    return this.#send(f.raw);
  }

  // ---- upstream → client ---------------------------------------------------

  #onUpstreamData(chunk: Buffer): void {
    const up = this.#upstream;
    if (!up || this.state === 'closed') return;
    try {
      up.framer.push(chunk);
      for (let f = up.framer.next(); f; f = up.framer.next()) this.#backendQueue.push(f);
    } catch {
      return this.#fatal(SQLSTATE.connectionFailure, 'invalid message from the database');
    }
    if (this.#backendQueue.length > MAX_QUEUED_FRAMES) up.socket.pause();
    this.#pumpBackend();
  }

  // Methods rather than private getters: V8 reads a private accessor through a runtime call,
  // and these run for every backend message.

  /** Pending Describe/Execute responses of the batch now answering. */
  #ops(): PortalOp[] {
    return (this.#inflight[0] ?? this.#open).ops;
  }

  /** The Execute whose rows are arriving now, if the head of the response stream is one. */
  #executing(): PortalState | undefined {
    const head = this.#ops()[0];
    return head?.kind === 'execute' ? head.portal : undefined;
  }

  /** The head Execute's response is complete (CommandComplete, PortalSuspended, EmptyQueryResponse). */
  #endExecute(): void {
    if (this.#executing()) this.#ops().shift();
  }

  #currentPlan(): MaskPlan {
    return (this.#inflight[0] ?? this.#open).plan;
  }

  /** The fields of a RowDescription for rows, decoded once per distinct body (they repeat with the statement shape). */
  #rowFields(body: Buffer): FieldDescription[] {
    const last = this.#rowDescBody;
    if (last !== undefined && last.equals(body)) return this.#rowDescFields;
    const fields = decodeRowDescription(body);
    this.#rowDescBody = Buffer.from(body);
    this.#rowDescFields = fields;
    return fields;
  }

  /** The backend loop: like the frontend loop, synchronous unless a frame must wait (catalog lookup, COPY). */
  #pumpBackend(): void {
    if (this.#backendPumping) return;
    this.#backendPumping = true;
    this.#continueBackend(this.#out);
  }

  #continueBackend(out: Buffer[]): void {
    try {
      while (this.#backendQueue.length && this.state !== 'closed') {
        const f = this.#backendQueue.shift() as Frame;
        const msg = this.#onBackend(f);
        if (msg instanceof Promise) {
          // Messages before it stay in `out`, so the client still sees them in order.
          msg.then(
            (m) => {
              if (m) out.push(m);
              this.#continueBackend(out);
            },
            (err: unknown) => this.#backendFailed(err),
          );
          return;
        }
        if (msg) out.push(msg);
        if (out.length >= 256) this.#flushClient(out);
      }
      this.#flushClient(out);
      const up = this.#upstream;
      if (up && up.socket.isPaused() && this.#backendQueue.length < MAX_QUEUED_FRAMES / 2 && this.#client.writableNeedDrain === false) up.socket.resume();
    } catch (err) {
      return this.#backendFailed(err);
    }
    this.#backendPumping = false;
  }

  #backendFailed(err: unknown): void {
    this.cfg.log({ event: 'session_error', session_id: this.id, error: (err as Error).message });
    this.#fatal(SQLSTATE.connectionFailure, 'proxy error');
    this.#backendPumping = false;
  }

  #flushClient(out: Buffer[]): void {
    if (!out.length || this.state === 'closed') return;
    const ok = this.#client.write(joinChunks(out));
    out.length = 0;
    if (!ok) this.#upstream?.socket.pause();
  }

  #onBackend(f: Frame): Buffer | undefined | Promise<Buffer | undefined> {
    switch (f.type) {
      case BACKEND.rowDescription: {
        const head = this.#ops()[0];
        if (head && head.kind !== 'execute') {
          // The answer to a Describe: a portal's columns are kept with the portal.
          this.#ops().shift();
          if (head.kind === 'describeStatement') {
            if (head.shape) head.shape.fields = decodeRowDescription(f.body);
            return f.raw;
          }
          if (head.kind === 'describePortal') {
            const fields = decodeRowDescription(f.body);
            head.portal.fields = fields;
            const portal = head.portal;
            const cached = isEmptyPlan(portal.plan) ? [] : cachedFieldActions(fields, portal.plan, this.cfg.catalog);
            if (cached) portal.actions = cached;
            else
              return fieldActions(fields, portal.plan, this.cfg.catalog).then((actions) => {
                portal.actions = actions;
                return f.raw;
              });
          }
          return f.raw;
        }
        this.#fields = this.#rowFields(f.body);
        this.#described = true;
        this.#rowPlan = this.#currentPlan();
        const cached = isEmptyPlan(this.#rowPlan) ? NO_ACTIONS : cachedFieldActions(this.#fields, this.#rowPlan, this.cfg.catalog);
        if (cached) {
          this.#actions = cached;
          return f.raw;
        }
        return fieldActions(this.#fields, this.#rowPlan, this.cfg.catalog).then((actions) => {
          this.#actions = actions;
          return f.raw;
        });
      }
      case BACKEND.dataRow: {
        const portal = this.#executing();
        if (portal) {
          // Columns known from a Describe Statement: their mask actions are worked out at the first row.
          if (portal.known && portal.fields && !portal.actions && !isEmptyPlan(portal.plan)) {
            const fields = portal.fields;
            const cached = cachedFieldActions(fields, portal.plan, this.cfg.catalog);
            if (cached) portal.actions = cached;
            else
              return fieldActions(fields, portal.plan, this.cfg.catalog).then((actions) => {
                portal.actions = actions;
                return maskPortalRow(f, portal);
              });
          }
          return maskPortalRow(f, portal);
        }
        if (!this.#described) {
          // Rows without a RowDescription (the client skipped Describe): origins are unknown,
          // so under any mask plan every value is withheld (NULL is valid for every type).
          const plan = this.#currentPlan();
          if (isEmptyPlan(plan)) return f.raw;
          return encodeDataRow(decodeDataRow(f.body).map(() => null));
        }
        if (!anyAction(this.#actions)) return f.raw;
        return maskDataRow(f.body, this.#actions, this.#fields, this.#rowPlan) ?? f.raw;
      }
      case BACKEND.noData: {
        const head = this.#ops()[0];
        if (head && head.kind !== 'execute') this.#ops().shift();
        return f.raw;
      }
      case BACKEND.portalSuspended:
      case BACKEND.emptyQueryResponse:
        this.#endExecute();
        return f.raw;
      case BACKEND.errorResponse:
      case BACKEND.noticeResponse: {
        const fields = decodeNotice(f.body);
        if (f.type === BACKEND.errorResponse) {
          // After an error the backend skips to Sync: no other Describe/Execute of the batch answers.
          const ops = this.#ops();
          if (ops.length) ops.length = 0;
          const message = fields.find(([c]) => c === ERROR_FIELDS.message)?.[1] ?? '';
          const m = /scopegate_denied_[0-9a-f]{24}/.exec(message);
          const denial = m ? this.#denials.get(m[0]) : undefined;
          if (m && denial) {
            this.#denials.delete(m[0]);
            return denial.error;
          }
        }
        const plan = this.#currentPlan();
        if (isEmptyPlan(plan)) return f.raw;
        return encodeNotice(f.type, maskNoticeFields(fields, plan));
      }
      case BACKEND.copyOutResponse:
      case BACKEND.copyBothResponse:
        return this.#onCopyOut(f);
      case BACKEND.copyData: {
        if (this.#copyMethods === undefined && this.#copyEvery === undefined) return f.raw;
        const row = maskCopyTextRow(f.body, this.#copyMethods ?? [], this.#rowPlan, this.#copyEvery, this.#copyLabels);
        return Buffer.concat([Buffer.from([BACKEND.copyData.charCodeAt(0)]), int32(row.length + 4), row]);
      }
      case BACKEND.copyDone:
        this.#copyMethods = undefined;
        this.#copyEvery = undefined;
        return f.raw;
      case BACKEND.commandComplete:
        this.#endExecute();
        this.#actions = NO_ACTIONS;
        this.#described = false;
        return f.raw;
      case BACKEND.readyForQuery:
        this.#inflight.shift();
        this.#actions = NO_ACTIONS;
        this.#described = false;
        this.#copyMethods = undefined;
        this.#copyEvery = undefined;
        if (this.#inflight.length === 0 && this.#denials.size > 0) this.#denials.clear();
        return f.raw;
      default:
        return f.raw;
    }
  }

  async #onCopyOut(f: Frame): Promise<Buffer | undefined> {
    const plan = this.#currentPlan();
    this.#rowPlan = plan;
    if (isEmptyPlan(plan)) return f.raw;
    const r = new BodyReader(f.body);
    const binary = r.byte() === 1;
    const copyStmt = this.#inflightStatements().find((s) => s.command === 'copy');
    const options = copyStmt?.effects?.includes('copy_options') ?? true;
    const tainted = plan.tainted;
    if (tainted && (binary || options || !copyStmt)) {
      // Masking needs the text format's row structure: refuse the output rather than leak it.
      this.#fatal(SQLSTATE.insufficientPrivilege, 'COPY output of masked columns is only allowed in text format');
      return undefined;
    }
    if (!tainted) {
      this.#copyMethods = plan.text && !binary ? [] : undefined;
      return f.raw;
    }
    const strictest = [...plan.columns.values()].includes('null') ? 'null' : 'redact';
    if (copyStmt?.effects?.includes('copy_query')) {
      this.#copyEvery = strictest;
      return f.raw;
    }
    let cols = (copyStmt?.columns ?? []).filter((c) => !c.endsWith('.*'));
    const star = copyStmt?.columns.find((c) => c.endsWith('.*'));
    if (star) cols = (await this.cfg.catalog.copyColumns(star.slice(0, -2)).catch(() => undefined)) ?? [];
    if (cols.length === 0) this.#copyEvery = strictest;
    this.#copyLabels = cols.map((c) => c.slice(c.lastIndexOf('.') + 1));
    if (cols.length > 0) this.#copyMethods = cols.map((c) => plan.columns.get(c) ?? plan.columns.get(`*.*.${c.slice(c.lastIndexOf('.') + 1)}`));
    return f.raw;
  }

  /** Statements of the batch currently answering (for COPY, which has no RowDescription). */
  #inflightStatements(): SqlStatement[] {
    return (this.#inflight[0] ?? this.#open).statements;
  }
}

/** A row of an Execute, masked with its own portal's plan and columns. */
function maskPortalRow(f: Frame, portal: PortalState): Buffer {
  if (portal.known && isEmptyPlan(portal.plan)) return f.raw;
  // Unknown portal, or columns never described: origins are unknown, so every value is withheld.
  if (!portal.known || !portal.fields || !portal.actions) return encodeDataRow(decodeDataRow(f.body).map(() => null));
  if (!anyAction(portal.actions)) return f.raw;
  return maskDataRow(f.body, portal.actions, portal.fields, portal.plan) ?? f.raw;
}

/**
 * One buffer for one write. Frames forwarded unchanged are slices of the chunk they arrived
 * in, usually back to back: those are written as one view of that memory instead of a copy.
 */
function joinChunks(out: Buffer[]): Buffer {
  const first = out[0] as Buffer;
  if (out.length === 1) return first;
  let end = first.byteOffset + first.length;
  for (let i = 1; i < out.length; i++) {
    const b = out[i] as Buffer;
    if (b.buffer !== first.buffer || b.byteOffset !== end) return Buffer.concat(out);
    end += b.length;
  }
  return Buffer.from(first.buffer, first.byteOffset, end - first.byteOffset);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}
