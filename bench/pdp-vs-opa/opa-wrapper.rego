# Benchmark wrapper: makes `opa run --server` do per decision what the scopegate PDP does —
# verify the scoped JWT (EdDSA, against the PDP's published JWKS, with the PDP's issuer and
# audience, exp/nbf at the current time), then evaluate the same entrypoint
# `scopegate/main/decision` with the verified claims as `input.subject`.
#
# Query it at POST /v1/data/bench/decision with {"input": <the /v1/decide request body>}.
package bench

import data.scopegate.main

claims := c if {
	[valid, _, c] := io.jwt.decode_verify(input.token, {
		"cert": data.bench_keys.jwks,
		"iss": "scopegate",
		"aud": "scopegate",
	})
	valid
}

decision := d if {
	d := main.decision with input as {
		"subject": claims,
		"resource": input.resource,
		"request": input.request,
		"context": object.get(input, "context", {}),
	}
}

# Fail closed, like the PDP: an unverifiable token is a denial.
decision := {"effect": "deny", "reasons": ["token_invalid"], "obligations": {}, "ttl_ms": 0} if not claims
