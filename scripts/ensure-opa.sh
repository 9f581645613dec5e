#!/usr/bin/env bash
# Prints the path of a usable opa CLI on stdout (nothing else goes to stdout).
# Order: $SCOPEGATE_OPA_BIN, `opa` on PATH, <repo>/.tools/bin/opa at the pinned version,
# then `go install` of the pinned version into <repo>/.tools/bin. Release binaries are
# never downloaded: the Go module proxy is the only source, so the build stays reproducible.
set -euo pipefail

OPA_VERSION="1.22.3"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_BIN="$REPO_ROOT/.tools/bin"
LOCAL_OPA="$TOOLS_BIN/opa"

if [[ -n "${SCOPEGATE_OPA_BIN:-}" ]]; then
  if [[ -x "$SCOPEGATE_OPA_BIN" ]] || command -v "$SCOPEGATE_OPA_BIN" >/dev/null 2>&1; then
    echo "$SCOPEGATE_OPA_BIN"
    exit 0
  fi
  echo "ensure-opa: SCOPEGATE_OPA_BIN=$SCOPEGATE_OPA_BIN is not an executable" >&2
  exit 1
fi

if command -v opa >/dev/null 2>&1; then
  command -v opa
  exit 0
fi

local_version() {
  "$LOCAL_OPA" version 2>/dev/null | sed -n 's/^Version: *//p' | head -n 1
}

if [[ -x "$LOCAL_OPA" ]] && [[ "$(local_version)" == "$OPA_VERSION" ]]; then
  echo "$LOCAL_OPA"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
ensure-opa: no opa CLI found.
  Install Go (https://go.dev/doc/install) so this script can run
    go install github.com/open-policy-agent/opa@v$OPA_VERSION
  or install opa $OPA_VERSION yourself and put it on PATH (or set SCOPEGATE_OPA_BIN).
MSG
  exit 1
fi

mkdir -p "$TOOLS_BIN"
echo "ensure-opa: installing opa v$OPA_VERSION with go install (first run only)..." >&2
# Quiet on success; go's own errors go to stderr on failure.
if ! GOBIN="$TOOLS_BIN" go install "github.com/open-policy-agent/opa@v$OPA_VERSION" >/dev/null; then
  echo "ensure-opa: 'go install github.com/open-policy-agent/opa@v$OPA_VERSION' failed; install opa $OPA_VERSION and set SCOPEGATE_OPA_BIN" >&2
  exit 1
fi

if [[ -x "$LOCAL_OPA" ]] && [[ "$(local_version)" == "$OPA_VERSION" ]]; then
  echo "$LOCAL_OPA"
  exit 0
fi
echo "ensure-opa: go install finished but $LOCAL_OPA does not report version $OPA_VERSION" >&2
exit 1
