# HTTP APIs: scope `http:<resource>:<METHOD>:<path-glob>`.
#
# The shim sends the path exactly as the upstream will see it, already normalised. A path
# that still carries dot segments, doubled slashes or encoded separators is denied
# rather than matched: a glob must never be fooled by a path the upstream reads otherwise.
package scopegate.http

import data.scopegate.scopes
import data.scopegate_config

cfg := object.get(scopegate_config, "http", {})

resource_cfg := object.get(object.get(cfg, "resources", {}), input.resource.name, {})

active if {
	input.resource.kind == "http"
	is_object(input.request.http)
}

method := upper(input.request.http.method) if active

path := input.request.http.path if active

# Substrings a normalised path never contains (compared lower case).
path_tricks := ["//", "/./", "/../", "\\", "%2e", "%2f", "%5c", "%00", "?", "#"]

normalised if {
	startswith(path, "/")
	not endswith(path, "/..")
	not endswith(path, "/.")
	every t in path_tricks {
		not contains(lower(path), t)
	}
}

perms contains {"kind": "http", "resource": input.resource.name, "action": method, "target": path} if normalised

deny contains concat(" ", ["path_not_normalised", path]) if {
	active
	not normalised
}

# A route rule applies when its method and path globs match; path globs follow the scope
# target rules (a trailing "/*" covers everything below).
rule_matches(rule) if {
	glob.match(upper(rule.method), null, method)
	glob.match(scopes.http_glob(rule.path), ["/"], path)
}

deny contains concat(" ", ["denied_route", method, rule.path]) if {
	normalised
	some rule in object.get(resource_cfg, "rules", [])
	rule.effect == "deny"
	rule_matches(rule)
}

approval contains {"reason": concat(" ", ["approval_required", method, path]), "settings": settings} if {
	normalised
	some rule in object.get(resource_cfg, "rules", [])
	rule.effect == "approval"
	rule_matches(rule)
	settings := object.get(rule, "approval", {})
}

# Response masking: JSON paths / field names and detectors, optionally limited to routes.
mask contains object.remove(m, ["path"]) if {
	normalised
	some m in object.get(resource_cfg, "mask", [])
	mask_applies(m)
}

mask_applies(m) if not m.path

mask_applies(m) if glob.match(scopes.http_glob(m.path), ["/"], path)
