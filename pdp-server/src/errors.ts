/**
 * One table of stable error codes. Bodies are `{code, message}`; tests assert on the code.
 * Codes in the `token_*`, `policy_*` and `input_*` families also appear as the `code` of a
 * deny decision, because on the decision path an error is an answer (deny), not a failure.
 */
export const ERRORS = {
  // request shape
  bad_request: { status: 400, message: 'The request is not valid.' },
  malformed_json: { status: 400, message: 'The request body is not valid JSON.' },
  body_too_large: { status: 413, message: 'The request body is too large.' },
  unsupported_media_type: { status: 415, message: 'The request body must be application/json.' },
  input_too_deep: { status: 400, message: 'The input is nested too deeply.' },
  not_found: { status: 404, message: 'No such resource.' },
  uri_too_long: { status: 414, message: 'The request path is too long.' },
  method_not_allowed: { status: 405, message: 'Method not allowed.' },

  // management credentials
  unauthenticated: { status: 401, message: 'A valid credential is required.' },
  forbidden: { status: 403, message: 'This credential may not do that.' },

  // decision-path errors (answered as deny decisions on /v1/decide)
  token_missing: { status: 401, message: 'No token was presented.' },
  token_malformed: { status: 401, message: 'The token is not a well-formed JWT.' },
  token_expired: { status: 401, message: 'The token has expired.' },
  token_not_yet_valid: { status: 401, message: 'The token is not valid yet.' },
  token_invalid_audience: { status: 401, message: 'The token is not meant for this audience.' },
  token_invalid_issuer: { status: 401, message: 'The token issuer is not trusted.' },
  token_invalid_algorithm: { status: 401, message: 'The token algorithm is not allowed.' },
  token_unknown_key: { status: 401, message: 'The token was signed with an unknown key.' },
  token_invalid_signature: { status: 401, message: 'The token signature does not verify.' },
  token_invalid_claims: { status: 401, message: 'The token claims are not valid.' },
  token_revoked: { status: 401, message: 'The token has been revoked.' },
  token_keys_unavailable: { status: 503, message: "The token issuer's keys could not be fetched." },
  policy_not_loaded: { status: 503, message: 'No policy is loaded.' },
  policy_evaluation_failed: { status: 500, message: 'The policy could not be evaluated.' },
  policy_undefined: { status: 500, message: 'The policy produced no decision.' },
  policy_invalid_result: { status: 500, message: 'The policy produced a malformed decision.' },

  // policy management
  bundle_invalid: { status: 400, message: 'The policy bundle is not valid.' },
  policy_compile_failed: { status: 400, message: 'The policy does not compile.' },

  // tokens
  token_ttl_too_long: { status: 400, message: 'The requested token lifetime exceeds the configured maximum.' },

  // approvals
  approval_not_pending: { status: 409, message: 'The approval has already been decided.' },
  approval_expired: { status: 409, message: 'The approval has expired.' },
  approval_self_decision: { status: 403, message: 'The requesting subject may not decide its own approval.' },

  // everything else
  unavailable: { status: 503, message: 'The service is not ready.' },
  internal: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** An error that knows its stable code. Thrown anywhere; rendered by the app's error handler. */
export class ScopegateError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message, options);
    this.name = 'ScopegateError';
    this.code = code;
    this.statusCode = ERRORS[code].status;
  }
}

export function isScopegateError(err: unknown): err is ScopegateError {
  return err instanceof ScopegateError;
}
