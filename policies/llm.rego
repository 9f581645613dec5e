# LLM endpoints: scope `llm:<provider-resource>:<operation>:<model-glob>`.
#
# Prompts are screened here with simple patterns (prompt injection; PII and secrets bound
# for external providers). The shim does the real masking; the policy only decides and
# says which detectors the shim must apply before the request leaves.
package scopegate.llm

import data.scopegate_config

cfg := object.get(scopegate_config, "llm", {})

resource_cfg := object.get(object.get(cfg, "resources", {}), input.resource.name, {})

active if {
	input.resource.kind == "llm"
	is_object(input.request.llm)
}

req := input.request.llm if active

operation := lower(object.get(req, "operation", "chat"))

perms contains {"kind": "llm", "resource": input.resource.name, "action": operation, "target": req.model}

texts contains m.content if {
	some m in req.messages
	is_string(m.content)
}

deny contains "prompt_injection" if {
	some t in texts
	some p in object.get(cfg, "injection_patterns", [])
	regex.match(concat("", ["(?i)", p]), t)
}

deny contains "max_tokens_exceeded" if {
	req.max_tokens > resource_cfg.max_tokens
}

deny contains "max_tokens_exceeded" if {
	req.estimated_tokens > resource_cfg.max_tokens
}

# --- sensitive data bound for an external provider -----------------------------------

external if resource_cfg.external == true

# What to do per detector: the resource's own choice, else the library default.
sensitive_action(d) := a if {
	a := resource_cfg.sensitive[d]
} else := object.get(object.get(cfg, "external_defaults", {}), d, "deny")

detected contains d if {
	external
	some d, pattern in object.get(cfg, "detectors", {})
	some t in texts
	regex.match(pattern, t)
}

deny contains concat(" ", ["sensitive_prompt", d]) if {
	some d in detected
	sensitive_action(d) == "deny"
}

# Masked detectors are always listed for external providers, found here or not: the
# shim's detectors are better than these regexes.
mask_request contains {"detector": d, "method": object.get(cfg, "mask_method", "redact")} if {
	active
	external
	some d, _ in object.get(cfg, "detectors", {})
	sensitive_action(d) == "mask"
}
