# Entrypoint `scopegate/main/decision`: combines the per-kind modules (and a user's
# `scopegate.ext` package, if any) into one decision:
#
#   {"effect": "allow" | "deny" | "approval_required", "reasons": [...],
#    "obligations": {"mask"?: [...], "mask_request"?: [...], "approval"?: {...}}, "ttl_ms": n}
#
# Default deny: a request is allowed only when every permission it needs is granted by a
# scope and nothing denies it. Reasons are short, stable strings meant for grep.
package scopegate.main

import data.scopegate.http
import data.scopegate.llm
import data.scopegate.scopes
import data.scopegate.sql
import data.scopegate.tool
import data.scopegate_config

builtin_kinds := {"sql", "http", "llm", "tool"}

kind := input.resource.kind

# A user's extension may declare kinds of its own (`kinds contains "vector"`) and grant
# them with `allow contains reason`.
ext_kinds := {k | some k in data.scopegate.ext.kinds}

ext_deny := {r | some r in data.scopegate.ext.deny}

ext_allow := {r | some r in data.scopegate.ext.allow}

ext_approval := {r | some r in data.scopegate.ext.approval}

ext_mask := {m | some m in data.scopegate.ext.mask}

# --- request shape -------------------------------------------------------------------

deny contains concat(" ", ["unknown_kind", kind]) if {
	not kind in builtin_kinds
	not kind in ext_kinds
}

# Helper rules, not `not is_object(input.request[kind])`: OPA evaluates a ref argument
# outside the negation, so an undefined part would make that expression fail, not hold.
has_request_part if is_object(input.request[kind])

has_subject if is_string(input.subject.sub)

deny contains concat(" ", ["request_missing", kind]) if {
	kind in builtin_kinds
	not has_request_part
}

deny contains concat(" ", ["request_mismatch", part]) if {
	kind in builtin_kinds
	some part, _ in input.request
	part != kind
}

deny contains "subject_missing" if not has_subject

# --- hard denials: no scope and no extension grant can override these ------------------

deny contains r if some r in sql.deny

deny contains r if some r in http.deny

deny contains r if some r in llm.deny

deny contains r if some r in tool.deny

deny contains r if some r in ext_deny

# --- scopes ----------------------------------------------------------------------------

perms := ((sql.perms | http.perms) | llm.perms) | tool.perms

grants contains concat(" ", ["scope", s]) if {
	some perm in perms
	some s in scopes.matching(perm)
}

# Permissions no scope grants. An extension `allow` overrides these (never `deny`).
missing contains concat(" ", ["no_scope", scopes.label(perm)]) if {
	some perm in perms
	count(scopes.matching(perm)) == 0
}

granted if {
	count(perms) > 0
	count(missing) == 0
}

granted if count(ext_allow) > 0

# --- approvals and obligations ---------------------------------------------------------

approvals := ((sql.approval | http.approval) | tool.approval) | {{"reason": r, "settings": {}} | some r in ext_approval}

masks := (sql.mask | http.mask) | ext_mask

mask_request := llm.mask_request

default_approval_mode := object.get(object.get(scopegate_config, "approval", {}), "mode", "once")

approval_modes := {object.get(a.settings, "mode", default_approval_mode) | some a in approvals}

# The strictest mode wins: one approval per request unless every rule allows a window.
approval_obligation := {"mode": "once"} if "once" in approval_modes

approval_obligation := {"mode": "window", "window_s": min(windows)} if {
	not "once" in approval_modes
	windows := {object.get(a.settings, "window_s", 300) | some a in approvals}
}

# --- the decision ------------------------------------------------------------------------

effect := "deny" if {
	count(deny) > 0
} else := "allow" if {
	granted
	count(approvals) == 0
} else := "approval_required" if {
	granted
} else := "deny"

reasons := sort(deny) if count(deny) > 0

reasons := sort(missing) if {
	count(deny) == 0
	count(missing) > 0
	not granted
}

reasons := [concat(" ", ["no_grant", concat(":", [kind, input.resource.name])])] if {
	count(deny) == 0
	count(missing) == 0
	not granted
}

reasons := array.concat(sort({a.reason | some a in approvals}), sort(grants | ext_allow)) if effect == "approval_required"

reasons := sort(grants | ext_allow) if effect == "allow"

obligation_parts["mask"] := sort(masks) if {
	effect != "deny"
	count(masks) > 0
}

obligation_parts["mask_request"] := sort(mask_request) if {
	effect != "deny"
	count(mask_request) > 0
}

obligation_parts["approval"] := approval_obligation if effect == "approval_required"

obligations := {k: v | some k, v in obligation_parts}

ttl(name, fallback) := object.get(object.get(scopegate_config, "ttl_ms", {}), name, fallback)

ttl_ms := ttl("allow", 30000) if effect == "allow"

ttl_ms := ttl("deny", 5000) if effect == "deny"

# An approval is per request: never cached.
ttl_ms := 0 if effect == "approval_required"

decision := {
	"effect": effect,
	"reasons": reasons,
	"obligations": obligations,
	"ttl_ms": ttl_ms,
}

# For OPA Data API clients that ask a yes/no question (`/v1/data/scopegate/main/allow`).
allow := effect == "allow"
