#!/usr/bin/env bash
# Prints the path of the vegeta load generator (benchmarks only) on stdout and nothing else:
# $SCOPEGATE_VEGETA_BIN when set, else <repo>/.tools/bin/vegeta, built on first use with
# `go install` from the Go module proxy at the pinned version (as ensure-opa.sh does for opa).
set -euo pipefail
if [[ -n "${SCOPEGATE_VEGETA_BIN:-}" ]]; then echo "$SCOPEGATE_VEGETA_BIN"; exit 0; fi
module="github.com/tsenart/vegeta/v12"
version="v12.13.0"
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.tools/bin"
# A go-installed binary reports no version of its own; its build info names the module's.
if ! go version -m "$tools/vegeta" 2>/dev/null | grep -q "$module[[:space:]]*$version"; then
  command -v go >/dev/null 2>&1 || { echo "ensure-vegeta: needs Go for 'go install $module@$version' (or set SCOPEGATE_VEGETA_BIN)" >&2; exit 1; }
  echo "ensure-vegeta: installing vegeta $version with go install (first run only)..." >&2
  mkdir -p "$tools"
  GOBIN="$tools" go install "$module@$version" >/dev/null
fi
echo "$tools/vegeta"
