#!/usr/bin/env bash
# Lints and unit-tests the bundled policy library:
#   opa fmt -l (must list nothing), opa check --strict against the WASM capabilities,
#   opa test, and opa test --coverage (fails below MIN_COVERAGE percent).
# Decision cases against the built WASM run in test/policy/cases.test.ts.
set -euo pipefail

MIN_COVERAGE="${MIN_COVERAGE:-90}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
POLICY_DIR="$REPO_ROOT/policies"
OPA="$(bash "$REPO_ROOT/scripts/ensure-opa.sh")"
# Same exclusions as the bundle build (pdp-server/src/policy/opa-cli.ts BUILD_IGNORE),
# except that the *_test.rego files are what `opa test` runs.
IGNORE=(--ignore cases --ignore capabilities.json --ignore '.*')

cd "$POLICY_DIR"

unformatted="$("$OPA" fmt -l .)"
if [[ -n "$unformatted" ]]; then
  echo "policy: not opa-fmt formatted (run: $OPA fmt -w policies):" >&2
  echo "$unformatted" >&2
  exit 1
fi

"$OPA" check --strict --capabilities capabilities.json "${IGNORE[@]}" .

# Plain run first so failures print readably.
"$OPA" test "${IGNORE[@]}" .

report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"$OPA" test --coverage --format=json "${IGNORE[@]}" . >"$report"

# Coverage over the library modules only; the tests themselves do not count.
coverage="$(node -e '
  // A line counts once, covered if any range covering it was evaluated.
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const rows = (ranges) => new Set((ranges ?? []).flatMap((x) => Array.from({ length: x.end.row - x.start.row + 1 }, (_, i) => x.start.row + i)));
  let covered = 0, total = 0;
  const missed = [];
  for (const [file, f] of Object.entries(r.files ?? {})) {
    if (file.endsWith("_test.rego")) continue;
    const c = rows(f.covered);
    const u = [...rows(f.not_covered)].filter((row) => !c.has(row));
    covered += c.size; total += c.size + u.length;
    if (u.length) missed.push(`${file}: ${u.sort((a, b) => a - b).join(",")}`);
  }
  if (missed.length) console.error("not covered lines:\n  " + missed.join("\n  "));
  console.log(total === 0 ? "0.00" : (100 * covered / total).toFixed(2));
' "$report")"

echo "policy coverage: ${coverage}% (minimum ${MIN_COVERAGE}%)"
node -e 'process.exit(Number(process.argv[1]) >= Number(process.argv[2]) ? 0 : 1)' "$coverage" "$MIN_COVERAGE" || {
  echo "policy: coverage ${coverage}% is below ${MIN_COVERAGE}%" >&2
  exit 1
}
