# Scope grammar and matching: `kind:resource:action[:target]`.
#
# A scope is split on ":" into at most four parts; the fourth (target) keeps any further
# colons, because http targets are paths and paths may contain ":". Every segment is a
# glob (see README.md for the exact rules). A scope without a target matches any target.
package scopegate.scopes

# Token scopes as handed over by the PDP (already verified); non-strings are ignored.
subject_scopes contains s if {
	some s in input.subject.scopes
	is_string(s)
}

# parse(s) is {"kind", "resource", "action"} plus "target" when the scope has one.
parse(s) := {"kind": p[0], "resource": p[1], "action": p[2], "target": t} if {
	p := split(s, ":")
	count(p) >= 4
	t := concat(":", array.slice(p, 3, count(p)))
}

parse(s) := {"kind": p[0], "resource": p[1], "action": p[2]} if {
	p := split(s, ":")
	count(p) == 3
}

# matching(perm) is the set of subject scopes that grant perm, where perm is
# {"kind", "resource"} plus optional "action" and "target". A perm without an action or
# target asks only for *some* scope on what it names (e.g. `begin` on a database).
matching(perm) := {s |
	some s in subject_scopes
	p := parse(s)
	glob.match(p.kind, null, perm.kind)
	glob.match(p.resource, null, perm.resource)
	action_ok(p, perm)
	target_ok(p, perm)
}

action_ok(_, perm) if not perm.action

# Actions compare case-insensitively: http methods are upper case, sql commands lower.
action_ok(p, perm) if glob.match(lower(p.action), null, lower(perm.action))

target_ok(p, _) if not p.target

target_ok(_, perm) if not perm.target

target_ok(p, perm) if target_match(perm.kind, p.target, perm.target)

# http targets are paths: "*" stays within one "/" segment, "**" crosses segments, and a
# trailing "/*" is read as "/**" (everything below that prefix).
target_match("http", pattern, value) if glob.match(http_glob(pattern), ["/"], value)

# Other targets (sql relations, llm models) have no delimiter: "*" matches any run.
target_match(kind, pattern, value) if {
	kind != "http"
	glob.match(pattern, null, value)
}

http_glob(p) := concat("", [trim_suffix(p, "/*"), "/**"]) if endswith(p, "/*")

http_glob(p) := p if not endswith(p, "/*")

# label(perm) renders a perm back in scope syntax for reasons: `sql:orders-db:select:public.orders`.
label(perm) := concat(":", [x |
	some k in ["kind", "resource", "action", "target"]
	x := perm[k]
])
