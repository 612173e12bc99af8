#!/usr/bin/env bash
# Builds the Pulumi CLI and the Node.js language host from Go modules at one pinned
# release, caches the binaries outside the repo (keyed by version), and writes the
# dynamic-provider plugin script. Idempotent: a second run with the cache present takes
# well under a second.
set -euo pipefail

PULUMI_VERSION="${UNDERSTUDY_PULUMI_VERSION:-3.248.0}"
CACHE_ROOT="${UNDERSTUDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/understudy}"
BIN_DIR="$CACHE_ROOT/pulumi-v$PULUMI_VERSION/bin"

say() { printf '[build-pulumi] %s\n' "$*" >&2; }

# --check: print the bin dir if the CLI is built (exit 0), else exit 1. Builds nothing.
if [ -x "$BIN_DIR/pulumi" ] && [ -x "$BIN_DIR/pulumi-language-nodejs" ] && [ -x "$BIN_DIR/pulumi-resource-pulumi-nodejs" ]; then
  echo "$BIN_DIR"
  exit 0
fi
[ "${1:-}" = --check ] && exit 1

command -v go >/dev/null || { say "Go is required to build the Pulumi CLI (Go >= 1.25.11). Install Go, then run again."; exit 1; }

# The build works in a temporary directory with its own Go module and build caches, removed
# at the end whatever happens: they hold 3.3 GB that nothing needs once the binaries exist.
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/understudy-build-pulumi.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/cli" "$WORK/langhost" "$BIN_DIR"
export GOMODCACHE="$WORK/gomodcache" GOCACHE="$WORK/gocache"
# -modcacherw: the module cache is writable, so that rm -rf removes it.
export GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local
LDFLAGS="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"

say "building the Pulumi CLI v$PULUMI_VERSION from Go modules in $WORK (first run only; about 5 minutes on 2 cores; removed afterwards)"
cd "$WORK/cli"
cat > go.mod <<GOMOD
module understudy.local/pulumi-cli

go 1.25.11

replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
GOMOD
say "resolving github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION"
go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" >&2
say "compiling pulumi"
go build -trimpath -ldflags "$LDFLAGS" -o "$BIN_DIR/pulumi.tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi >&2

# The Node.js language host. Since sdk v3.69 it lives in its own Go module
# (github.com/pulumi/pulumi/sdk/nodejs/cmd/pulumi-language-nodejs/v3), which the Go module
# proxy reachable here refuses (403). sdk/v3 up to v3.68.0 still carries it as a package;
# that host speaks the same LanguageRuntime protocol and runs TypeScript programs and
# dynamic providers under the v3.248 CLI (checked by the integration tests).
LANGHOST_SDK="${UNDERSTUDY_LANGHOST_SDK:-v3.68.0}"
cd "$WORK/langhost"
cat > go.mod <<GOMOD
module understudy.local/pulumi-langhost

go 1.25.11
GOMOD
say "resolving the Node.js language host (github.com/pulumi/pulumi/sdk/v3@$LANGHOST_SDK)"
go get "github.com/pulumi/pulumi/sdk/v3@$LANGHOST_SDK" >&2
say "compiling pulumi-language-nodejs"
go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/pulumi-language-nodejs.tmp" github.com/pulumi/pulumi/sdk/v3/nodejs/cmd/pulumi-language-nodejs >&2

cat > "$BIN_DIR/pulumi-resource-pulumi-nodejs.tmp" <<'SH'
#!/bin/sh
# Dynamic-provider plugin, as in the official distribution: run the SDK's provider host.
exec node ./node_modules/@pulumi/pulumi/cmd/dynamic-provider "$@"
SH
chmod +x "$BIN_DIR"/*.tmp
for f in pulumi pulumi-language-nodejs pulumi-resource-pulumi-nodejs; do mv "$BIN_DIR/$f.tmp" "$BIN_DIR/$f"; done
say "Pulumi CLI ready: $("$BIN_DIR/pulumi" version)"
echo "$BIN_DIR"
