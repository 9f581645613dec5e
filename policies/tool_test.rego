package scopegate.tool_test

import data.scopegate.main

decide(resource, scopes, req) := d if {
	d := main.decision with input as {
		"subject": {"sub": "agent", "iss": "scopegate", "scopes": scopes},
		"resource": {"kind": "tool", "name": resource},
		"request": {"tool": req},
		"context": {},
	}
}

test_call_allowed if {
	d := decide("web-search", ["tool:web-search:call"], {"name": "web-search"})
	d.effect == "allow"
	d.reasons == ["scope tool:web-search:call"]
}

test_action_scope if {
	decide("web-search", ["tool:web-search:call"], {"name": "web-search", "action": "admin"}).reasons == ["no_scope tool:web-search:admin"]
	decide("web-search", ["tool:web-search:*"], {"name": "web-search", "action": "admin"}).effect == "allow"
}

test_mismatch if {
	decide("web-search", ["tool:*:*"], {"name": "shell"}).reasons == ["tool_mismatch shell"]
}

test_disabled if {
	decide("delete-repo", ["tool:*:*"], {"name": "delete-repo"}).reasons == ["tool_disabled delete-repo"]
}

test_approval_modes if {
	decide("send-email", ["tool:send-email:call"], {"name": "send-email"}).obligations.approval == {"mode": "once"}
	decide("shell", ["tool:shell:call"], {"name": "shell"}).obligations.approval == {"mode": "window", "window_s": 600}
}

test_approval_limited_to_actions if {
	cfg := {"mode": "once", "actions": ["send"]}
	d := decide("mailer", ["tool:mailer:*"], {"name": "mailer", "action": "draft"}) with data.scopegate_config.tool.resources.mailer.approval as cfg
	d.effect == "allow"
	d2 := decide("mailer", ["tool:mailer:*"], {"name": "mailer", "action": "send"}) with data.scopegate_config.tool.resources.mailer.approval as cfg
	d2.effect == "approval_required"
}
