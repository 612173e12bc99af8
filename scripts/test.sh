#!/usr/bin/env bash
# `npm test`: install what is needed, then unit and integration tests (real engine,
# real zfs-fuse, real PostgreSQL 13/15, real PgBouncer, real SSH to 127.0.0.1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
eval "$(bash scripts/setup.sh)"
npx --no-install vitest run "$@"
