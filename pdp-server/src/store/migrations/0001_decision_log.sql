-- The decision log: one row per decision and per approval event.
-- Range-partitioned by day on `time`; partitions are created ahead and dropped after the
-- retention period by pdp-server/src/store/decision-partitions.ts (not here, because the
-- set of days moves with the clock).
-- The primary key must contain the partition key, so it is (time, decision_id): the writer
-- keeps the original `time` of an entry through the spool, so a replayed entry collides with
-- itself and `ON CONFLICT DO NOTHING` makes replay exactly-once.
CREATE TABLE IF NOT EXISTS decision_log (
  time            timestamptz NOT NULL,
  decision_id     text        NOT NULL,
  event           text        NOT NULL DEFAULT 'decision',
  instance        text,
  subject         text,
  issuer          text,
  jti             text,
  chain           text,
  step            text,
  session_id      text,
  shim            text,
  resource_kind   text        NOT NULL,
  resource_name   text        NOT NULL,
  request_summary jsonb,
  effect          text        NOT NULL CHECK (effect IN ('allow', 'deny', 'approval_required')),
  reasons         text[]      NOT NULL DEFAULT '{}',
  code            text,
  policy_revision text        NOT NULL,
  latency_us      bigint      NOT NULL DEFAULT 0,
  cache_hit       boolean     NOT NULL DEFAULT false,
  approval_id     text,
  PRIMARY KEY (time, decision_id)
) PARTITION BY RANGE (time);

CREATE INDEX IF NOT EXISTS decision_log_decision_id ON decision_log (decision_id);
CREATE INDEX IF NOT EXISTS decision_log_subject_time ON decision_log (subject, time);
CREATE INDEX IF NOT EXISTS decision_log_session_time ON decision_log (session_id, time) WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS decision_log_resource_time ON decision_log (resource_name, time);
CREATE INDEX IF NOT EXISTS decision_log_approval ON decision_log (approval_id) WHERE approval_id IS NOT NULL;
