package scopegate.http_test

import data.scopegate.main

decide(resource, scopes, method, path) := d if {
	d := main.decision with input as {
		"subject": {"sub": "agent", "iss": "scopegate", "scopes": scopes},
		"resource": {"kind": "http", "name": resource},
		"request": {"http": {"method": method, "path": path}},
		"context": {},
	}
}

test_get_allowed_with_masks if {
	d := decide("crm", ["http:crm:GET:/v1/contacts/*"], "get", "/v1/contacts/7")
	d.effect == "allow"
	d.reasons == ["scope http:crm:GET:/v1/contacts/*"]
	{"target": "email", "method": "redact"} in d.obligations.mask
	{"detector": "credit_card", "method": "last4"} in d.obligations.mask
}

test_method_mismatch_denied if {
	d := decide("crm", ["http:crm:GET:/v1/contacts/*"], "PATCH", "/v1/contacts/7")
	d.reasons == ["no_scope http:crm:PATCH:/v1/contacts/7"]
}

test_path_tricks_denied if {
	every p in ["/a/../b", "/a/./b", "/a//b", "/a/%2e%2e/b", "/a/%2F", "/a\\b", "/a/..", "/a/.", "a/b", "/a?x=1", "/a#f", "/a%00"] {
		d := decide("crm", ["http:crm:*:/**"], "GET", p)
		d.effect == "deny"
		d.reasons == [concat(" ", ["path_not_normalised", p])]
	}
}

test_denied_route if {
	d := decide("crm", ["http:crm:*:/**"], "DELETE", "/v1/contacts")
	d.reasons == ["denied_route DELETE /v1/contacts"]
}

test_windowed_approval_route if {
	d := decide("crm", ["http:crm:DELETE:/v1/contacts/*"], "DELETE", "/v1/contacts/9")
	d.effect == "approval_required"
	d.obligations.approval == {"mode": "window", "window_s": 900}
	d.reasons[0] == "approval_required DELETE /v1/contacts/9"
}

test_payments_post_needs_approval_once if {
	d := decide("payments", ["http:payments:POST:/v1/*"], "POST", "/v1/refunds")
	d.effect == "approval_required"
	d.obligations.approval == {"mode": "once"}
}

test_route_limited_mask if {
	masks := [{"target": "$.secret", "method": "redact", "path": "/v1/keys/*"}]
	d1 := decide("crm", ["http:crm:GET:/**"], "GET", "/v1/keys/1") with data.scopegate_config.http.resources.crm.mask as masks
	d1.obligations.mask == [{"target": "$.secret", "method": "redact"}]
	d2 := decide("crm", ["http:crm:GET:/**"], "GET", "/v1/other") with data.scopegate_config.http.resources.crm.mask as masks
	d2.obligations == {}
}

test_unconfigured_resource_has_no_obligations if {
	d := decide("weather", ["http:weather:GET:/**"], "GET", "/v1/today")
	d.effect == "allow"
	d.obligations == {}
}
