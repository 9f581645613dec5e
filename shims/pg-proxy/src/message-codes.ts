/**
 * PostgreSQL frontend/backend protocol 3.0 constants.
 * Spec: PostgreSQL docs, chapter 55 "Frontend/Backend Protocol", §55.7 "Message Formats".
 */

/** Codes of the untyped first message (§55.7: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest). */
export const STARTUP_CODES = {
  protocolV3: 196608, // 3 << 16
  sslRequest: 80877103, // 1234 << 16 | 5679
  gssEncRequest: 80877104, // 1234 << 16 | 5680
  cancelRequest: 80877102, // 1234 << 16 | 5678
} as const;

/** Type bytes of messages sent by the client (§55.7, "(F)" messages). */
export const FRONTEND = {
  bind: 'B',
  close: 'C',
  copyData: 'd',
  copyDone: 'c',
  copyFail: 'f',
  describe: 'D',
  execute: 'E',
  flush: 'H',
  functionCall: 'F',
  parse: 'P',
  /** PasswordMessage, SASLInitialResponse, SASLResponse, GSSResponse all use 'p'. */
  password: 'p',
  query: 'Q',
  sync: 'S',
  terminate: 'X',
} as const;

/** Type bytes of messages sent by the server (§55.7, "(B)" messages). */
export const BACKEND = {
  authentication: 'R',
  backendKeyData: 'K',
  bindComplete: '2',
  closeComplete: '3',
  commandComplete: 'C',
  copyData: 'd',
  copyDone: 'c',
  copyInResponse: 'G',
  copyOutResponse: 'H',
  copyBothResponse: 'W',
  dataRow: 'D',
  emptyQueryResponse: 'I',
  errorResponse: 'E',
  functionCallResponse: 'V',
  negotiateProtocolVersion: 'v',
  noData: 'n',
  noticeResponse: 'N',
  notificationResponse: 'A',
  parameterDescription: 't',
  parameterStatus: 'S',
  parseComplete: '1',
  portalSuspended: 's',
  readyForQuery: 'Z',
  rowDescription: 'T',
} as const;

/** Authentication request subtypes (§55.7 "AuthenticationXxx"). */
export const AUTH = {
  ok: 0,
  cleartextPassword: 3,
  md5Password: 5,
  sasl: 10,
  saslContinue: 11,
  saslFinal: 12,
} as const;

/** Field codes of ErrorResponse / NoticeResponse (§55.8 "Error and Notice Message Fields"). */
export const ERROR_FIELDS = {
  severity: 'S',
  severityNonLocalized: 'V',
  code: 'C',
  message: 'M',
  detail: 'D',
  hint: 'H',
  position: 'P',
  internalPosition: 'p',
  internalQuery: 'q',
  where: 'W',
  schema: 's',
  table: 't',
  column: 'c',
  dataType: 'd',
  constraint: 'n',
  file: 'F',
  line: 'L',
  routine: 'R',
} as const;

/** SQLSTATEs the proxy itself answers with (Appendix A "PostgreSQL Error Codes"). */
export const SQLSTATE = {
  insufficientPrivilege: '42501',
  invalidPassword: '28P01',
  invalidAuthorizationSpecification: '28000',
  protocolViolation: '08P01',
  connectionFailure: '08006',
  featureNotSupported: '0A000',
  programLimitExceeded: '54000',
  tooManyConnections: '53300',
  queryCanceled: '57014',
} as const;

/** Transaction status byte of ReadyForQuery. */
export const TX_STATUS = { idle: 'I', inTransaction: 'T', failed: 'E' } as const;
