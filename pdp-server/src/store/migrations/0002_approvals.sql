-- Just-in-time approvals. An approval is bound to (subject, fingerprint): the exact request
-- of the exact subject. `expires_at` means: while pending, the deadline for a human to decide;
-- once approved, the deadline to use it (single use for mode 'once', any number of uses until
-- then for mode 'window').
CREATE TABLE IF NOT EXISTS approvals (
  id              text        PRIMARY KEY,
  subject         text        NOT NULL,
  fingerprint     text        NOT NULL,
  resource_kind   text        NOT NULL,
  resource_name   text        NOT NULL,
  reasons         text[]      NOT NULL DEFAULT '{}',
  summary         jsonb,
  status          text        NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'consumed')),
  mode            text        NOT NULL DEFAULT 'once' CHECK (mode IN ('once', 'window')),
  window_s        integer,
  decision_id     text        NOT NULL,
  session_id      text,
  chain           text,
  step            text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  decided_at      timestamptz,
  decided_by      text,
  decided_by_role text,
  note            text,
  uses            integer     NOT NULL DEFAULT 0,
  last_used_at    timestamptz,
  last_used_by_decision text
);

-- At most one open request per (subject, fingerprint): repeated attempts reuse it.
CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending ON approvals (subject, fingerprint) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS approvals_grant ON approvals (subject, fingerprint, status, expires_at);
CREATE INDEX IF NOT EXISTS approvals_status_created ON approvals (status, created_at);
