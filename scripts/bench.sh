#!/usr/bin/env bash
# `npm run bench -- [clone|rehearsal|growth|pause|all]`: benchmarks in bench/, each prints a Markdown table.
# `all` runs clone and rehearsal; growth is long (an hour or more at 20 GB) and pause (the cut-over
# pause, replay vs logical, about 40 min) run only when named.
set -euo pipefail
cd "$(dirname "$0")/.."
# Two steps, so that a failed setup stops here (an eval of a failed "$(...)" would not).
env_lines=$(bash scripts/setup.sh bench)
eval "$env_lines"
what=${1:-all}
run() { npx --no-install ts-node --transpile-only "bench/$1.ts"; }
case "$what" in
  clone) run clone-vs-size ;;
  rehearsal) run rehearsal-vs-script ;;
  growth) run growth ;;
  pause) run cutover-pause ;;
  all) run clone-vs-size; run rehearsal-vs-script ;;
  *) echo "usage: npm run bench -- [clone|rehearsal|growth|pause|all]" >&2; exit 2 ;;
esac
