/**
 * jose's error classes → scopegate's stable token_* codes, in one table.
 *
 * Keyed by jose's own stable `code` strings (ERR_JWT_EXPIRED, …) rather than by class, so
 * the lookup is a property read and does not depend on subclass order.
 */
import { errors } from 'jose';
import { ScopegateError, isScopegateError, type ErrorCode } from '../errors.js';

const BY_JOSE_CODE: Readonly<Record<string, ErrorCode>> = {
  [errors.JOSEAlgNotAllowed.code]: 'token_invalid_algorithm',
  [errors.JWTExpired.code]: 'token_expired',
  [errors.JWSSignatureVerificationFailed.code]: 'token_invalid_signature',
  [errors.JWKSNoMatchingKey.code]: 'token_unknown_key',
  // No kid and several keys could match: we will not guess which one was meant.
  [errors.JWKSMultipleMatchingKeys.code]: 'token_unknown_key',
  [errors.JWSInvalid.code]: 'token_malformed',
  [errors.JWTInvalid.code]: 'token_malformed',
  // Unrecognised `crit` extensions and similar: a token we cannot process as written.
  [errors.JOSENotSupported.code]: 'token_malformed',
  // A JWE was presented where a JWS belongs.
  [errors.JWEInvalid.code]: 'token_malformed',
  // The issuer's key set could not be fetched or is unusable (only remote issuers).
  [errors.JWKSTimeout.code]: 'token_keys_unavailable',
  [errors.JWKSInvalid.code]: 'token_keys_unavailable',
  [errors.JWKInvalid.code]: 'token_keys_unavailable',
  // Plain JOSEError is what createRemoteJWKSet throws for a non-200 or non-JSON answer.
  [errors.JOSEError.code]: 'token_keys_unavailable',
};

/** Which claim failed a JWTClaimValidationFailed (jose sets `.claim`). */
const BY_FAILED_CLAIM: Readonly<Record<string, ErrorCode>> = {
  nbf: 'token_not_yet_valid',
  aud: 'token_invalid_audience',
  iss: 'token_invalid_issuer',
  // exp/sub/iat missing or of the wrong type, typ mismatch, …
};

/** Map anything thrown while verifying to a ScopegateError with a token_* code. */
export function toTokenError(err: unknown): ScopegateError {
  if (isScopegateError(err)) return err;
  if (err instanceof errors.JWTClaimValidationFailed) {
    // JWTExpired extends JWTClaimValidationFailed; its code is found below.
    if (err.code === errors.JWTClaimValidationFailed.code) {
      return new ScopegateError(BY_FAILED_CLAIM[err.claim] ?? 'token_invalid_claims', undefined, { cause: err });
    }
  }
  if (err instanceof errors.JOSEError) {
    return new ScopegateError(BY_JOSE_CODE[err.code] ?? 'token_malformed', undefined, { cause: err });
  }
  // Anything else (a network TypeError from fetching a remote JWKS is wrapped before it
  // gets here): we could not verify the token, so it is not accepted.
  return new ScopegateError('token_malformed', undefined, { cause: err });
}
