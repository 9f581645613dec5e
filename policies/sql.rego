# SQL: statements summarised by the pg-proxy from the real Postgres parser.
#
# Every statement's command must be granted on every relation it touches
# (`sql:<db>:<command>:<schema.table>`), and every relation it writes needs the write
# command too. Dangerous functions, commands and effects are denied whatever the scopes.
package scopegate.sql

import data.scopegate_config

cfg := object.get(scopegate_config, "sql", {})

db := input.resource.name

resource_cfg := object.get(object.get(cfg, "resources", {}), db, {})

active if {
	input.resource.kind == "sql"
	is_object(input.request.sql)
}

statements := s if {
	active
	s := object.get(input.request.sql, "statements", [])
}

command(st) := lower(st.command)

writes(st) := object.get(st, "writes", [])

touched(st) := {r | some r in st.relations} | {r | some r in writes(st)}

# A write whose kind the summariser could not name (a data-modifying CTE inside a
# select) needs every write command: fail closed rather than guess.
write_actions(st) := {command(st)} if command(st) in cfg.write_commands

# COPY … FROM only adds rows: besides `copy` (required on every relation above) its table
# needs `insert`, as an INSERT of the same rows would.
write_actions(st) := {"insert"} if copy_into(st)

write_actions(st) := {c | some c in cfg.write_commands; c in {"insert", "update", "delete"}} if {
	not command(st) in cfg.write_commands
	not copy_into(st)
}

copy_into(st) if {
	command(st) == "copy"
	some e in object.get(st, "effects", [])
	lower(e) == "copy_from"
}

session_command(st) if command(st) in cfg.session_commands

# --- permissions the request needs ---------------------------------------------------

perms contains {"kind": "sql", "resource": db, "action": command(st), "target": rel} if {
	some st in statements
	some rel in st.relations
}

perms contains {"kind": "sql", "resource": db, "action": action, "target": rel} if {
	some st in statements
	some rel in writes(st)
	some action in write_actions(st)
}

# `select 1`, `select now()`: a statement touching no relation needs the command on the
# database, whatever the target.
perms contains {"kind": "sql", "resource": db, "action": command(st)} if {
	some st in statements
	count(touched(st)) == 0
	not session_command(st)
}

# Transaction control and session settings that drivers send on their own need only
# some scope on the database.
perms contains {"kind": "sql", "resource": db} if {
	some st in statements
	count(touched(st)) == 0
	session_command(st)
}

# --- denied whatever the scopes -----------------------------------------------------

deny contains "empty_request sql" if {
	active
	count(statements) == 0
}

deny contains concat(" ", ["dangerous_function", name]) if {
	some st in statements
	some f in st.functions
	name := function_name(f)
	dangerous_function(name)
}

deny contains concat(" ", ["dangerous_command", command(st)]) if {
	some st in statements
	command(st) in cfg.dangerous_commands
}

deny contains concat(" ", ["dangerous_effect", lower(e)]) if {
	some st in statements
	some e in object.get(st, "effects", [])
	lower(e) in cfg.dangerous_effects
}

# Strip quoting and the schema: `pg_catalog."PG_READ_FILE"` is pg_read_file.
function_name(f) := n if {
	parts := split(lower(replace(f, "\"", "")), ".")
	n := parts[count(parts) - 1]
}

dangerous_function(name) if name in cfg.dangerous_functions

dangerous_function(name) if {
	some prefix in cfg.dangerous_function_prefixes
	startswith(name, prefix)
}

# A column the shim masks may not be used to ask about its value:
# - `filter_columns` decide which rows come back, how many or in what order (WHERE, JOIN
#   conditions, GROUP BY, HAVING, ORDER BY, DISTINCT ON, LIMIT, set-returning function
#   arguments, and sub-selects in them): `WHERE ssn LIKE '1%'` reads it back one question
#   at a time;
# - `expression_columns` are computed on in a select list by an expression that could fail
#   on the value (`1/(CASE WHEN ssn LIKE '1%' THEN 0 ELSE 1 END)`): the error text is
#   withheld, but whether the statement failed answers the question.
# A resource may exempt named columns (`filterable_masked_columns`), e.g. an email an agent
# looks customers up by; such a column can be probed anyway, so it may be computed on too.
probe_reasons := {"filter_columns": "masked_column_in_filter", "expression_columns": "masked_column_in_expression"}

deny contains concat(" ", [reason, col]) if {
	some field, reason in probe_reasons
	some st in statements
	some f in object.get(st, field, [])
	some col, _ in object.get(resource_cfg, "sensitive_columns", {})
	not col in object.get(resource_cfg, "filterable_masked_columns", [])
	column_reaches(f, col)
}

column_reaches(f, col) if f == col

# A whole-row reference (`WHERE c::text LIKE …`) reaches every column of its relation.
column_reaches(f, col) if {
	endswith(f, ".*")
	startswith(col, trim_suffix(f, "*"))
}

# A column the summariser could not tie to a relation (`?.ssn`) may be any relation's.
column_reaches(f, col) if {
	startswith(f, "?.")
	endswith(col, substring(f, 1, -1))
}

# --- approval on production resources ------------------------------------------------

# Relations an approval rule looks at: the written ones when the summariser names them.
approval_relations(st) := {r | some r in writes(st)} if count(writes(st)) > 0

approval_relations(st) := {r | some r in st.relations} if count(writes(st)) == 0

approval contains {"reason": concat(" ", ["approval_required", command(st), rel]), "settings": settings} if {
	resource_cfg.production == true
	some st in statements
	some rule in object.get(resource_cfg, "approval", [])
	some rel in approval_relations(st)
	some rp in rule.relations
	glob.match(rp, null, rel)
	some cp in rule.commands
	glob.match(cp, null, command(st))
	settings := object.get(rule, "approval", {})
}

# --- masking --------------------------------------------------------------------------

# The shim masks by result column identity, so every sensitive column of every touched
# relation is listed, whether or not the statement names it.
mask contains {"target": col, "method": method} if {
	some st in statements
	some rel in touched(st)
	some col, method in object.get(resource_cfg, "sensitive_columns", {})
	startswith(col, concat("", [rel, "."]))
	not contains(substring(col, count(rel) + 1, -1), ".")
}
