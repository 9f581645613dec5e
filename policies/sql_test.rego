package scopegate.sql_test

import data.scopegate.main

stmt(command, relations) := {"command": command, "relations": relations, "columns": [], "functions": []}

sql_input(scopes, statements) := {
	"subject": {"sub": "agent", "iss": "scopegate", "scopes": scopes},
	"resource": {"kind": "sql", "name": "orders-db"},
	"request": {"sql": {"statements": statements}},
	"context": {},
}

decide(scopes, statements) := d if {
	d := main.decision with input as sql_input(scopes, statements)
}

test_select_allowed if {
	d := decide(["sql:orders-db:select:public.orders"], [stmt("select", ["public.orders"])])
	d.effect == "allow"
	d.reasons == ["scope sql:orders-db:select:public.orders"]
	d.ttl_ms == 30000
	d.obligations == {}
}

test_every_relation_needs_the_command if {
	d := decide(["sql:orders-db:select:public.orders"], [stmt("select", ["public.orders", "public.items"])])
	d.effect == "deny"
	d.reasons == ["no_scope sql:orders-db:select:public.items"]
	d.ttl_ms == 5000
}

test_writes_need_write_command if {
	s := object.union(stmt("update", ["public.orders"]), {"writes": ["public.orders"]})
	decide(["sql:orders-db:update:public.orders"], [s]).effect == "allow"
	decide(["sql:orders-db:select:public.orders"], [s]).effect == "deny"
}

test_copy_from_needs_copy_and_insert_only if {
	s := object.union(stmt("copy", ["public.orders"]), {"writes": ["public.orders"], "effects": ["copy_from"]})
	decide(["sql:orders-db:copy:public.orders", "sql:orders-db:insert:public.orders"], [s]).effect == "allow"
	decide(["sql:orders-db:copy:public.orders"], [s]).reasons == ["no_scope sql:orders-db:insert:public.orders"]
	decide(["sql:orders-db:insert:public.orders"], [s]).reasons == ["no_scope sql:orders-db:copy:public.orders"]
}

test_cte_write_needs_all_write_commands if {
	s := object.union(stmt("select", ["public.orders"]), {"writes": ["public.orders"], "effects": ["data_modifying_cte"]})
	d := decide(["sql:orders-db:select:public.orders", "sql:orders-db:delete:public.orders"], [s])
	d.effect == "deny"
	"no_scope sql:orders-db:insert:public.orders" in d.reasons
	decide(["sql:orders-db:*:public.orders"], [s]).effect == "allow"
}

test_masks_sensitive_columns_of_touched_relations if {
	d := decide(["sql:orders-db:select:*"], [stmt("select", ["public.customers"])])
	d.effect == "allow"
	{m.target | some m in d.obligations.mask} == {
		"public.customers.ssn", "public.customers.email",
		"public.customers.phone", "public.customers.card_number",
	}
	{"target": "public.customers.ssn", "method": "redact"} in d.obligations.mask
}

filtered(command, relations, filters) := object.union(stmt(command, relations), {"filter_columns": filters})

test_masked_column_in_a_filter_is_denied if {
	d := decide(["sql:orders-db:select:*"], [filtered("select", ["public.customers"], ["public.customers.id", "public.customers.ssn"])])
	d.effect == "deny"
	"masked_column_in_filter public.customers.ssn" in d.reasons
}

test_unmasked_column_in_a_filter_is_allowed if {
	d := decide(["sql:orders-db:select:*"], [filtered("select", ["public.customers"], ["public.customers.id"])])
	d.effect == "allow"
	"public.customers.ssn" in {m.target | some m in d.obligations.mask}
}

test_whole_row_and_unattributed_filters_reach_masked_columns if {
	whole := decide(["sql:orders-db:select:*"], [filtered("select", ["public.customers"], ["public.customers.*"])])
	"masked_column_in_filter public.customers.email" in whole.reasons
	loose := decide(["sql:orders-db:select:*"], [filtered("select", [], ["?.salary"])])
	loose.reasons == ["masked_column_in_filter public.payroll.salary"]

	# `public.customers_archive.*` is another relation, not a prefix match.
	decide(["sql:orders-db:select:*"], [filtered("select", ["public.customers_archive"], ["public.customers_archive.*"])]).effect == "allow"
}

test_masked_column_in_a_failing_expression_is_denied if {
	s := object.union(stmt("select", ["public.customers"]), {"expression_columns": ["public.customers.ssn"]})
	d := decide(["sql:orders-db:select:*"], [s])
	d.reasons == ["masked_column_in_expression public.customers.ssn"]
	other := object.union(stmt("select", ["public.customers"]), {"expression_columns": ["public.customers.id"]})
	decide(["sql:orders-db:select:*"], [other]).effect == "allow"
}

test_filterable_masked_columns_opt_out_one_column if {
	cfg := {"sql": {"resources": {"orders-db": {
		"sensitive_columns": {"public.customers.email": "hash", "public.customers.ssn": "redact"},
		"filterable_masked_columns": ["public.customers.email"],
	}}}}
	by_email := main.decision with input as sql_input(["sql:orders-db:select:*"], [filtered("select", ["public.customers"], ["public.customers.email"])])
		with data.scopegate_config.sql.resources as cfg.sql.resources
	by_email.effect == "allow"
	by_ssn := main.decision with input as sql_input(["sql:orders-db:select:*"], [filtered("select", ["public.customers"], ["public.customers.ssn"])])
		with data.scopegate_config.sql.resources as cfg.sql.resources
	by_ssn.reasons == ["masked_column_in_filter public.customers.ssn"]
}

test_no_mask_for_other_relation_with_common_prefix if {
	d := decide(["sql:orders-db:select:*"], [stmt("select", ["public.customers_archive"])])
	d.obligations == {}
}

test_dangerous_function_beats_wildcard_scope if {
	s := object.union(stmt("select", []), {"functions": ["pg_catalog.pg_ls_dir"]})
	d := decide(["*:*:*:*"], [s])
	d.effect == "deny"
	d.reasons == ["dangerous_function pg_ls_dir"]
}

test_dangerous_function_exact_list if {
	s := object.union(stmt("select", []), {"functions": ["PG_SLEEP"]})
	decide(["*:*:*:*"], [s]).reasons == ["dangerous_function pg_sleep"]
}

test_harmless_function_allowed if {
	s := object.union(stmt("select", ["public.orders"]), {"functions": ["pg_catalog.lower", "now"]})
	decide(["sql:orders-db:select:*"], [s]).effect == "allow"
}

test_dangerous_command if {
	decide(["*:*:*:*"], [stmt("alter_system", [])]).reasons == ["dangerous_command alter_system"]
}

test_dangerous_effect if {
	s := object.union(stmt("copy", ["public.orders"]), {"effects": ["COPY_FILE"]})
	decide(["*:*:*:*"], [s]).reasons == ["dangerous_effect copy_file"]
}

test_relationless_statement_needs_command_on_db if {
	decide(["sql:orders-db:select:public.orders"], [stmt("select", [])]).effect == "allow"
	decide(["sql:orders-db:insert:public.orders"], [stmt("select", [])]).reasons == ["no_scope sql:orders-db:select"]
}

test_session_command_needs_any_scope_on_db if {
	decide(["sql:orders-db:insert:public.orders"], [stmt("begin", [])]).effect == "allow"
	decide(["sql:hr-db:select:*"], [stmt("commit", [])]).reasons == ["no_scope sql:orders-db"]
}

test_empty_request if {
	decide(["*:*:*:*"], []).reasons == ["empty_request sql"]
}

test_approval_on_production_payroll if {
	s := object.union(stmt("delete", ["public.payroll"]), {"writes": ["public.payroll"]})
	d := decide(["sql:orders-db:delete:public.payroll"], [s])
	d.effect == "approval_required"
	d.reasons == ["approval_required delete public.payroll", "scope sql:orders-db:delete:public.payroll"]
	d.obligations.approval == {"mode": "once"}
	d.ttl_ms == 0
}

test_approval_looks_at_written_relations_only if {
	s := object.union(stmt("delete", ["public.orders", "public.payroll"]), {"writes": ["public.orders"]})
	d := decide(["sql:orders-db:delete:public.*"], [s])
	d.effect == "allow"
}

test_drop_anywhere_needs_approval_by_command_glob if {
	d := decide(["sql:orders-db:drop_table:*"], [stmt("drop_table", ["public.orders"])])
	d.effect == "approval_required"
	"approval_required drop_table public.orders" in d.reasons
}

test_non_production_needs_no_approval if {
	s := object.union(stmt("delete", ["public.payroll"]), {"writes": ["public.payroll"]})
	d := decide(["sql:orders-db:delete:public.payroll"], [s]) with data.scopegate_config.sql.resources["orders-db"].production as false
	d.effect == "allow"
}

test_windowed_approval_from_data if {
	s := object.union(stmt("delete", ["public.payroll"]), {"writes": ["public.payroll"]})
	rules := [{"relations": ["public.payroll"], "commands": ["delete"], "approval": {"mode": "window", "window_s": 120}}]
	d := decide(["sql:orders-db:delete:public.payroll"], [s]) with data.scopegate_config.sql.resources["orders-db"].approval as rules
	d.obligations.approval == {"mode": "window", "window_s": 120}
}
