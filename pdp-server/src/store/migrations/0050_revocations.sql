-- Token and subject revocations (owned by pdp-server/src/revocation).
-- A row revokes one token (jti) or every token of a subject issued before issued_before.
-- expires_at: when the revoked token(s) would have expired anyway; past it the row is pruned.
-- NULL means "unknown, keep".
CREATE TABLE IF NOT EXISTS scopegate_revocations (
  id text PRIMARY KEY,
  jti text,
  sub text,
  issued_before timestamptz,
  reason text,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_by text NOT NULL,
  CHECK ((jti IS NOT NULL) <> (sub IS NOT NULL)),
  CHECK (sub IS NULL OR issued_before IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS scopegate_revocations_jti ON scopegate_revocations (jti) WHERE jti IS NOT NULL;
CREATE INDEX IF NOT EXISTS scopegate_revocations_created_at ON scopegate_revocations (created_at);
CREATE INDEX IF NOT EXISTS scopegate_revocations_expires_at ON scopegate_revocations (expires_at) WHERE expires_at IS NOT NULL;
