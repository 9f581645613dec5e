/**
 * The decision contract, written once.
 *
 * JSON schemas (TypeBox) for every request and answer of the decision API, and the
 * TypeScript types derived from them. Fastify validates and serializes with these
 * schemas; the shims import this module (and only this module) from pdp-server.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** Limits that keep a single decision request cheap to parse and evaluate. */
export const LIMITS = {
  /** Largest request body the PDP accepts, in bytes. */
  bodyBytes: 1024 * 1024,
  /** Longest string anywhere in a decision request. */
  stringChars: 64 * 1024,
  /** Most items in any array of a decision request. */
  arrayItems: 1000,
  /** Deepest nesting of objects/arrays inside free-form parts (JSON body summary, tool arguments). */
  depth: 16,
  /** Most requests in one batch. */
  batchItems: 100,
} as const;

const Str = (opts: { maxLength?: number; minLength?: number; pattern?: string } = {}) =>
  Type.String({ maxLength: LIMITS.stringChars, ...opts });
const StrList = (max: number = LIMITS.arrayItems) => Type.Array(Str(), { maxItems: max });

export const RESOURCE_KINDS = ['sql', 'http', 'llm', 'tool'] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/**
 * Resource being reached. `kind` is deliberately an open string: an unknown kind is not a
 * malformed request but one the policy has no rule for, and so it is denied by policy.
 */
export const Resource = Type.Object(
  {
    kind: Str({ minLength: 1, maxLength: 64 }),
    name: Str({ minLength: 1, maxLength: 256 }),
  },
  { additionalProperties: false },
);
export type Resource = Static<typeof Resource>;

/** One parsed SQL statement, as summarised by the pg-proxy from the libpg-query AST. */
export const SqlStatement = Type.Object(
  {
    command: Str({ maxLength: 64 }),
    relations: StrList(),
    columns: StrList(),
    functions: StrList(),
    /** Other effects the summariser found: 'data_modifying_cte', 'select_into', 'copy_program', … */
    effects: Type.Optional(StrList()),
    /** Relations written by this statement (insert/update/delete targets, data-modifying CTEs). */
    writes: Type.Optional(StrList()),
    /**
     * Columns (a subset-or-more of what is read) that decide which rows come back, how many
     * or in what order: WHERE, JOIN conditions, GROUP BY, HAVING, window and ORDER BY
     * clauses, DISTINCT ON, LIMIT/OFFSET, FROM-clause function arguments, and sub-selects in
     * any of them; through a derived table or CTE, every column that source reads.
     */
    filter_columns: Type.Optional(StrList()),
    /**
     * Columns computed on in a select list by an expression that could fail on their value
     * (anything but a reference, a cast to text, `||` and a few functions that cannot fail).
     */
    expression_columns: Type.Optional(StrList()),
  },
  { additionalProperties: false },
);
export type SqlStatement = Static<typeof SqlStatement>;

export const SqlRequest = Type.Object(
  {
    statements: Type.Array(SqlStatement, { maxItems: LIMITS.arrayItems }),
    /** Hash of the statement's shape (constants replaced): the same for `… = 1` and `… = 2`. */
    fingerprint: Type.Optional(Str({ maxLength: 256 })),
    /**
     * Hash of the exact statement text. It binds an approval to exactly the statement that
     * was approved; it is not shown to policies (so it never splits cached decisions).
     */
    text_sha256: Type.Optional(Str({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type SqlRequest = Static<typeof SqlRequest>;

/** Free-form JSON, bounded in depth by the PDP before evaluation (see LIMITS.depth). */
export const AnyJson = Type.Unknown();

export const HttpRequest = Type.Object(
  {
    method: Str({ minLength: 1, maxLength: 16 }),
    host: Type.Optional(Str({ maxLength: 256 })),
    /** Normalised path exactly as the upstream will see it. */
    path: Str({ minLength: 1, maxLength: 8192 }),
    query: Type.Optional(Type.Record(Type.String(), Type.Union([Str(), StrList()]))),
    headers: Type.Optional(Type.Record(Type.String(), Str())),
    /** Summary of a JSON body: top-level keys, size, selected values. */
    body: Type.Optional(AnyJson),
  },
  { additionalProperties: false },
);
export type HttpRequest = Static<typeof HttpRequest>;

export const LlmMessage = Type.Object(
  { role: Str({ maxLength: 32 }), content: Str() },
  { additionalProperties: false },
);
export const LlmRequest = Type.Object(
  {
    provider: Str({ maxLength: 128 }),
    model: Str({ maxLength: 256 }),
    operation: Type.Optional(Str({ maxLength: 64 })),
    messages: Type.Array(LlmMessage, { maxItems: LIMITS.arrayItems }),
    tools: Type.Optional(StrList()),
    max_tokens: Type.Optional(Type.Integer({ minimum: 0 })),
    estimated_tokens: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type LlmRequest = Static<typeof LlmRequest>;

export const ToolRequest = Type.Object(
  {
    name: Str({ minLength: 1, maxLength: 256 }),
    action: Type.Optional(Str({ maxLength: 64 })),
    arguments: Type.Optional(AnyJson),
    schema_hash: Type.Optional(Str({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type ToolRequest = Static<typeof ToolRequest>;

/** Exactly one kind-specific part is expected; the policy checks it matches resource.kind. */
export const DecisionRequestBody = Type.Object(
  {
    sql: Type.Optional(SqlRequest),
    http: Type.Optional(HttpRequest),
    llm: Type.Optional(LlmRequest),
    tool: Type.Optional(ToolRequest),
  },
  { additionalProperties: false },
);
export type DecisionRequestBody = Static<typeof DecisionRequestBody>;

export const DecisionContext = Type.Object(
  {
    session_id: Type.Optional(Str({ maxLength: 256 })),
    chain: Type.Optional(Str({ maxLength: 256 })),
    step: Type.Optional(Str({ maxLength: 256 })),
    run_id: Type.Optional(Str({ maxLength: 256 })),
    client_addr: Type.Optional(Str({ maxLength: 256 })),
    /** Which shim enforces this decision: 'pg-proxy', 'http-proxy', 'sdk', 'nginx', … */
    shim: Type.Optional(Str({ maxLength: 64 })),
  },
  { additionalProperties: false },
);
export type DecisionContext = Static<typeof DecisionContext>;

export const DecideRequest = Type.Object(
  {
    token: Str({ maxLength: 16 * 1024 }),
    resource: Resource,
    request: DecisionRequestBody,
    context: Type.Optional(DecisionContext),
  },
  { additionalProperties: false },
);
export type DecideRequest = Static<typeof DecideRequest>;

/**
 * Uses of decisions a shim answered from its local cache, reported back so the decision log
 * stays complete (`POST /v1/decisions/cached`). One item stands for every call of one
 * session that reused one cached decision during the report interval.
 */
export const CachedDecisionUse = Type.Object(
  {
    /** Index into the report's `tokens`: a token is sent once per report, not once per item. */
    token: Type.Integer({ minimum: 0, maximum: 999 }),
    /** The decision that was reused (the PDP's answer the shim cached). */
    decision_id: Str({ maxLength: 64 }),
    policy_revision: Str({ maxLength: 256 }),
    resource: Resource,
    request: DecisionRequestBody,
    context: Type.Optional(DecisionContext),
    count: Type.Integer({ minimum: 1 }),
    /** When the first and the last of these calls were answered, in ms since the epoch. */
    first_ms: Type.Integer({ minimum: 0 }),
    last_ms: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type CachedDecisionUse = Static<typeof CachedDecisionUse>;

export const CachedDecisionReport = Type.Object(
  {
    tokens: Type.Array(Str({ maxLength: 16 * 1024 }), { maxItems: 1000 }),
    uses: Type.Array(CachedDecisionUse, { maxItems: 5000 }),
  },
  { additionalProperties: false },
);
export type CachedDecisionReport = Static<typeof CachedDecisionReport>;

export const EFFECTS = ['allow', 'deny', 'approval_required'] as const;
export type Effect = (typeof EFFECTS)[number];

export const MaskRule = Type.Object(
  {
    /** Column (`schema.table.column`), JSON path (`$.a.b`) or field name to mask. */
    target: Type.Optional(Type.String()),
    /** Detector name: email, phone, credit_card, us_ssn, iban, ip_address, secret. */
    detector: Type.Optional(Type.String()),
    /** redact | null | last4 | hash */
    method: Type.String(),
  },
  { additionalProperties: false },
);
export type MaskRule = Static<typeof MaskRule>;

export const ApprovalObligation = Type.Object(
  {
    id: Type.String(),
    expires_at: Type.String(),
    status: Type.Optional(Type.String()),
    /** From the policy: 'once' (single use) or 'window' (reusable for window_s seconds). */
    mode: Type.Optional(Type.String()),
    window_s: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type ApprovalObligation = Static<typeof ApprovalObligation>;

export const Obligations = Type.Object(
  {
    mask: Type.Optional(Type.Array(MaskRule)),
    approval: Type.Optional(ApprovalObligation),
    /** Prompt-side masking before a request leaves for an external model. */
    mask_request: Type.Optional(Type.Array(MaskRule)),
  },
  { additionalProperties: true },
);
export type Obligations = Static<typeof Obligations>;

export const Decision = Type.Object(
  {
    decision_id: Type.String(),
    effect: Type.Union(EFFECTS.map((e) => Type.Literal(e))),
    allow: Type.Boolean(),
    reasons: Type.Array(Type.String()),
    obligations: Obligations,
    policy_revision: Type.String(),
    ttl_ms: Type.Integer({ minimum: 0 }),
    /** Present when the decision is a denial caused by an error (bad token, evaluation failure). */
    code: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type Decision = Static<typeof Decision>;

export const DecideBatchRequest = Type.Object(
  { requests: Type.Array(DecideRequest, { minItems: 1, maxItems: LIMITS.batchItems }) },
  { additionalProperties: false },
);
export type DecideBatchRequest = Static<typeof DecideBatchRequest>;

export const DecideBatchResponse = Type.Object(
  { decisions: Type.Array(Decision) },
  { additionalProperties: false },
);
export type DecideBatchResponse = Static<typeof DecideBatchResponse>;

/** Every error body: a stable code and a human message (OPA ErrorV1 style). */
export const ErrorBody = Type.Object(
  { code: Type.String(), message: Type.String(), decision_id: Type.Optional(Type.String()) },
  { additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBody>;

export const MintTokenRequest = Type.Object(
  {
    sub: Str({ minLength: 1, maxLength: 256 }),
    scopes: Type.Array(Str({ minLength: 1, maxLength: 1024 }), { minItems: 1, maxItems: 256 }),
    ttl_s: Type.Optional(Type.Integer({ minimum: 1 })),
    chain: Type.Optional(Str({ maxLength: 256 })),
    step: Type.Optional(Str({ maxLength: 256 })),
    aud: Type.Optional(Str({ maxLength: 256 })),
  },
  { additionalProperties: false },
);
export type MintTokenRequest = Static<typeof MintTokenRequest>;

export const MintTokenResponse = Type.Object(
  { token: Type.String(), jti: Type.String(), expires_at: Type.String() },
  { additionalProperties: false },
);
export type MintTokenResponse = Static<typeof MintTokenResponse>;

/** Claims of a verified scoped token, as handed to policies in `input.subject`. */
export interface SubjectClaims {
  sub: string;
  iss: string;
  jti?: string;
  scopes: string[];
  chain?: string;
  step?: string;
  exp?: number;
  iat?: number;
  [claim: string]: unknown;
}

/** The document a policy evaluates: the request plus verified claims, never the raw token. */
export interface PolicyInput {
  subject: SubjectClaims;
  resource: Resource;
  request: DecisionRequestBody;
  context: DecisionContext;
}

/** What the Rego entrypoint `scopegate/main/decision` returns. */
export interface PolicyResult {
  effect: Effect;
  reasons: string[];
  obligations?: Obligations;
  ttl_ms?: number;
}

/** Header carrying the decision id on check endpoints and shim errors. */
export const DECISION_ID_HEADER = 'x-scopegate-decision-id';

export type { Static, TSchema };
