package scopegate.scopes_test

import data.scopegate.scopes

test_parse_three_parts if {
	scopes.parse("tool:web-search:call") == {"kind": "tool", "resource": "web-search", "action": "call"}
}

test_parse_target_keeps_colons if {
	scopes.parse("http:crm:POST:/v1/a:b:c") == {"kind": "http", "resource": "crm", "action": "POST", "target": "/v1/a:b:c"}
}

test_parse_too_short_is_undefined if {
	not scopes.parse("tool:web-search")
}

grants(scope, perm) if {
	scopes.matching(perm) == {scope} with input.subject.scopes as [scope]
}

test_exact_sql_scope if {
	grants("sql:orders-db:select:public.orders", {"kind": "sql", "resource": "orders-db", "action": "select", "target": "public.orders"})
}

test_sql_star_matches_any_relation if {
	grants("sql:orders-db:select:*", {"kind": "sql", "resource": "orders-db", "action": "select", "target": "public.orders"})
}

test_missing_target_matches_any_target if {
	grants("sql:orders-db:select", {"kind": "sql", "resource": "orders-db", "action": "select", "target": "public.orders"})
}

test_perm_without_target_matches_targeted_scope if {
	grants("sql:orders-db:select:public.orders", {"kind": "sql", "resource": "orders-db", "action": "select"})
}

test_perm_without_action_matches_any_action if {
	grants("sql:orders-db:insert:public.x", {"kind": "sql", "resource": "orders-db"})
}

test_action_case_insensitive if {
	grants("http:crm:get:/v1/x", {"kind": "http", "resource": "crm", "action": "GET", "target": "/v1/x"})
}

test_other_resource_does_not_match if {
	not grants("sql:orders-db:select:*", {"kind": "sql", "resource": "hr-db", "action": "select", "target": "public.x"})
}

test_http_star_stays_in_segment if {
	not grants("http:crm:GET:/v1/*/notes", {"kind": "http", "resource": "crm", "action": "GET", "target": "/v1/a/b/notes"})
}

test_http_trailing_star_is_deep if {
	grants("http:crm:GET:/v1/*", {"kind": "http", "resource": "crm", "action": "GET", "target": "/v1/a/b"})
}

test_http_glob_rewrite if {
	scopes.http_glob("/a/*") == "/a/**"
	scopes.http_glob("/a/*/b") == "/a/*/b"
}

test_non_string_scopes_ignored if {
	scopes.subject_scopes == {"tool:x:call"} with input.subject.scopes as [1, null, "tool:x:call", {"a": 1}]
}

test_label_with_and_without_target if {
	scopes.label({"kind": "sql", "resource": "db", "action": "select", "target": "public.t"}) == "sql:db:select:public.t"
	scopes.label({"kind": "sql", "resource": "db"}) == "sql:db"
}
