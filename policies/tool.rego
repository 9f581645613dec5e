# Tools (LangChain tools, MCP tools): scope `tool:<tool-name>:<action>`, action defaults
# to "call". The resource name is the tool name; the request must name the same tool.
package scopegate.tool

import data.scopegate_config

cfg := object.get(scopegate_config, "tool", {})

name := input.resource.name

resource_cfg := object.get(object.get(cfg, "resources", {}), name, {})

active if {
	input.resource.kind == "tool"
	is_object(input.request.tool)
}

req := input.request.tool if active

action := lower(object.get(req, "action", "call"))

perms contains {"kind": "tool", "resource": name, "action": action} if req.name == name

deny contains concat(" ", ["tool_mismatch", req.name]) if req.name != name

deny contains concat(" ", ["tool_disabled", name]) if {
	active
	resource_cfg.disabled == true
}

approval contains {"reason": concat(" ", ["approval_required", action, name]), "settings": settings} if {
	active
	settings := resource_cfg.approval
	action in object.get(settings, "actions", [action])
}
