#!/usr/bin/env bash
# `npm test`: install what is needed, then unit and integration tests (real engine,
# real zfs-fuse, real PostgreSQL 13/15, real PgBouncer, real SSH to 127.0.0.1).
# Extra arguments go to vitest (e.g. `npm test -- test/unit`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# Two steps, so that a failed setup stops here (an eval of a failed "$(...)" would not).
env_lines=$(bash scripts/setup.sh test)
eval "$env_lines"
echo "[understudy test] type-checking the tests" >&2
npx --no-install tsc -p tsconfig.test.json
results=$(mktemp)
rc=0
npx --no-install vitest run --reporter=verbose --reporter=json --outputFile.json="$results" "$@" || rc=$?
# One plain closing line for CI: "N passed, N failed, N skipped".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$results" || true
rm -f "$results"
exit $rc
