-- Policy bundles (tar.gz from `opa build -t wasm`) shared by all replicas
-- (owned by pdp-server/src/cluster/policy-distribution.ts). The newest is the row with the
-- highest seq; publishing an existing revision again (a rollback) gives it a new seq.
CREATE SEQUENCE IF NOT EXISTS scopegate_policy_bundle_seq;
CREATE TABLE IF NOT EXISTS scopegate_policy_bundles (
  revision text PRIMARY KEY,
  bundle bytea NOT NULL,
  seq bigint NOT NULL DEFAULT nextval('scopegate_policy_bundle_seq'),
  published_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS scopegate_policy_bundles_seq ON scopegate_policy_bundles (seq DESC);
