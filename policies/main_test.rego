package scopegate.main_test

import data.scopegate.main

base := {
	"subject": {"sub": "agent", "iss": "scopegate", "scopes": ["tool:web-search:call"]},
	"resource": {"kind": "tool", "name": "web-search"},
	"request": {"tool": {"name": "web-search"}},
	"context": {},
}

test_decision_shape if {
	d := main.decision with input as base
	object.keys(d) == {"effect", "reasons", "obligations", "ttl_ms"}
	main.allow with input as base
}

test_unknown_kind if {
	d := main.decision with input as object.union(base, {"resource": {"kind": "ftp", "name": "x"}, "request": {}})
	d.effect == "deny"
	d.reasons == ["unknown_kind ftp"]
	d.ttl_ms == 5000
	not main.allow with input as object.union(base, {"resource": {"kind": "ftp", "name": "x"}, "request": {}})
}

test_request_missing_and_mismatch if {
	inp := object.union(object.remove(base, ["request"]), {"request": {"sql": {"statements": []}}})
	d := main.decision with input as inp
	d.reasons == ["request_mismatch sql", "request_missing tool"]
}

test_subject_missing if {
	d := main.decision with input as object.remove(base, ["subject"])
	"subject_missing" in d.reasons
}

test_no_scope if {
	d := main.decision with input as base with input.subject.scopes as []
	d.reasons == ["no_scope tool:web-search:call"]
}

test_ttl_from_data if {
	d := main.decision with input as base with data.scopegate_config.ttl_ms as {"allow": 1000, "deny": 10}
	d.ttl_ms == 1000
}

test_ttl_defaults_without_data if {
	d := main.decision with input as base with data.scopegate_config as {}
	d.ttl_ms == 30000
}

# --- the scopegate.ext extension points ---

test_ext_deny_overrides_scope if {
	d := main.decision with input as base with data.scopegate.ext.deny as {"chain_blocked"}
	d.effect == "deny"
	d.reasons == ["chain_blocked"]
}

test_ext_allow_overrides_missing_scope if {
	d := main.decision with input as object.union(base, {"subject": {"sub": "a", "scopes": []}}) with data.scopegate.ext.allow as {"ext reporting"}
	d.effect == "allow"
	d.reasons == ["ext reporting"]
}

test_ext_allow_cannot_override_hard_deny if {
	d := main.decision with input as object.union(base, {"request": {"tool": {"name": "shell"}}}) with data.scopegate.ext.allow as {"ext any"}
	d.reasons == ["tool_mismatch shell"]
}

test_ext_kind_needs_ext_allow if {
	inp := object.union(base, {"resource": {"kind": "vector", "name": "docs"}, "request": {}})
	d := main.decision with input as inp with data.scopegate.ext.kinds as {"vector"}
	d.reasons == ["no_grant vector:docs"]
	d2 := main.decision with input as inp with data.scopegate.ext.kinds as {"vector"} with data.scopegate.ext.allow as {"ext vector read"}
	d2.effect == "allow"
}

test_ext_approval_and_mask if {
	d := main.decision with input as base
		with data.scopegate.ext.approval as {"ext after_hours"}
		with data.scopegate.ext.mask as {{"detector": "email", "method": "redact"}}
	d.effect == "approval_required"
	d.reasons == ["ext after_hours", "scope tool:web-search:call"]
	d.obligations == {"approval": {"mode": "once"}, "mask": [{"detector": "email", "method": "redact"}]}
}

test_ext_approval_without_grant_is_deny if {
	d := main.decision with input as base with input.subject.scopes as [] with data.scopegate.ext.approval as {"ext x"}
	d.effect == "deny"
}

test_strictest_approval_mode_wins if {
	approvals := {
		{"reason": "a", "settings": {"mode": "window", "window_s": 60}},
		{"reason": "b", "settings": {"mode": "window", "window_s": 30}},
	}
	main.approval_obligation == {"mode": "window", "window_s": 30} with main.approvals as approvals
	main.approval_obligation == {"mode": "once"} with main.approvals as approvals | {{"reason": "c", "settings": {}}}
}
