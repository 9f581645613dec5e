/**
 * One error handler: every error body is `{code, message}` with a stable code from
 * errors.ts. 5xx answers say nothing internal; the detail goes to the log.
 */
import fp from 'fastify-plugin';
import type { FastifyError, FastifyInstance } from 'fastify';
import { ERRORS, isScopegateError, type ErrorCode } from '../errors.js';

/** Fastify's own error codes, mapped to ours. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'malformed_json',
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_VALIDATION: 'bad_request',
};

export default fp(
  async function errorsPlugin(app: FastifyInstance) {
    app.setErrorHandler((err: FastifyError, request, reply) => {
      let code: ErrorCode;
      let message: string;
      if (isScopegateError(err)) {
        code = err.code;
        message = err.message;
      } else if (err.validation) {
        code = 'bad_request';
        message = `${err.validationContext ?? 'request'}${err.validation[0]?.instancePath ?? ''} ${err.validation[0]?.message ?? 'is invalid'}`;
      } else if (err.code && FASTIFY_CODES[err.code]) {
        code = FASTIFY_CODES[err.code]!;
        message = ERRORS[code].message;
      } else if (err instanceof SyntaxError) {
        code = 'malformed_json';
        message = ERRORS[code].message;
      } else if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
        code =
          err.statusCode === 413 ? 'body_too_large' : err.statusCode === 414 ? 'uri_too_long' : err.statusCode === 415 ? 'unsupported_media_type' : 'bad_request';
        message = ERRORS[code].message;
      } else {
        code = 'internal';
        message = ERRORS.internal.message;
      }
      const status = ERRORS[code].status;
      if (status >= 500) request.log.error({ err, code }, 'request failed');
      reply.code(status).send({ code, message });
    });
    app.setNotFoundHandler((_request, reply) => {
      reply.code(404).send({ code: 'not_found', message: ERRORS.not_found.message });
    });
  },
  { name: 'scopegate-errors' },
);
