/**
 * Stable error codes the http-proxy answers with. Bodies are `{code, message}` (plus
 * `decision_id` / `approval_id` when a decision was made); tests assert on the code.
 * Token codes are the PDP's own (a deny decision's `code`), passed through unchanged.
 */
export const PROXY_ERRORS = {
  route_not_found: { status: 404, message: 'No route matches this request.' },
  path_invalid: { status: 400, message: 'The request path is not valid.' },
  path_ambiguous: { status: 400, message: 'The request path uses an encoding the upstream could read differently.' },
  query_invalid: { status: 400, message: 'The query string is not valid.' },
  header_invalid: { status: 400, message: 'A request header is not acceptable.' },
  malformed_json: { status: 400, message: 'The request body is not valid JSON.' },
  body_too_large: { status: 413, message: 'The request body is too large.' },
  bad_request: { status: 400, message: 'The request is not valid.' },
  llm_request_invalid: { status: 400, message: 'The model request is missing a model or is not a JSON object.' },
  llm_operation_unsupported: { status: 404, message: 'This model endpoint is not supported by the proxy.' },
  prompt_too_large: { status: 413, message: 'The prompt is too large to be checked.' },
  token_missing: { status: 401, message: 'A scoped token is required (Authorization: Bearer).' },
  denied: { status: 403, message: 'The policy denied this request.' },
  approval_required: { status: 403, message: 'This request needs an approval; retry once it is granted.' },
  approval_denied: { status: 403, message: 'The approval for this request was denied.' },
  pdp_unavailable: { status: 503, message: 'The policy decision point could not be reached; the request is denied.' },
  upstream_unavailable: { status: 502, message: 'The upstream could not be reached.' },
  upstream_timeout: { status: 504, message: 'The upstream did not answer in time.' },
  response_too_large: { status: 502, message: 'The upstream response is too large to be masked.' },
  response_unmaskable: { status: 502, message: 'The upstream response cannot be masked as the policy requires.' },
  internal: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ProxyErrorCode = keyof typeof PROXY_ERRORS;

export class ProxyError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ProxyErrorCode,
    readonly detail?: string,
  ) {
    super(PROXY_ERRORS[code].message);
    this.name = 'ProxyError';
    this.statusCode = PROXY_ERRORS[code].status;
  }
}
