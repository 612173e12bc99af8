#!/usr/bin/env bash
# Installs and starts everything Understudy's demo and tests need, on a fresh Debian 12
# machine (as root) or one that already has it. Idempotent: a second run takes seconds.
#   - Debian packages: zfs-fuse, PostgreSQL 13 (bullseye) and 15, pgbouncer, openssh-server, cron
#   - the zfs-fuse daemon
#   - the Pulumi CLI + Node.js language host, built from Go modules and cached
#   - npm dependencies and the compiled package (dist/)
#   - sshd on 127.0.0.1:2222 with a generated test key (for the SSH tests)
# Prints `export ...` lines for the caller to eval into its environment (see env.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
say() { printf '[understudy setup] %s\n' "$*" >&2; }
die() { printf '[understudy setup] ERROR: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || die "run as root (installs Debian packages and starts zfs-fuse); on a shared machine use a VM"

# --- Debian packages --------------------------------------------------------------------
need=()
# zfs-fuse, PostgreSQL 13 and 15, PgBouncer: the product's own parts. The rest is for the tests:
# sshd and sudo (SSH to 127.0.0.1, a non-root login), lvm2 and xfsprogs (the EBS backend's
# volume assembly on loop devices), chromium (the timeline page), shellcheck (actionlint's
# run: checks), python3-venv (moto's server), strace (the schedule script writes no file).
pkgs=(zfs-fuse postgresql-13 postgresql-15 pgbouncer openssh-server cron sudo lvm2 xfsprogs chromium shellcheck python3-venv iproute2 procps strace)
for b in /usr/sbin/zfs-fuse /usr/lib/postgresql/13/bin/pg_ctl /usr/lib/postgresql/15/bin/pg_upgrade /usr/sbin/pgbouncer /usr/sbin/sshd /usr/sbin/cron \
         /usr/bin/sudo /usr/sbin/lvm /usr/sbin/mkfs.xfs /usr/bin/chromium /usr/bin/shellcheck /usr/bin/ss /usr/bin/pgrep /usr/share/doc/python3-venv /usr/bin/strace; do
  [ -e "$b" ] || need+=("$b")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages (missing: ${need[*]})"
  bash "$here/setup-apt-sources.sh" >&2 || die "could not add Debian's bullseye suite (see above)"
  apt-get update -qq >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list.d/"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 \
    || die "apt-get install failed (see above)"
fi
# The packages create and start 'main' clusters and a pgbouncer service we do not use.
for v in 13 15; do
  if pg_lsclusters -h 2>/dev/null | awk -v v=$v '$1==v && $2=="main" && $4=="online"' | grep -q .; then
    pg_ctlcluster "$v" main stop >&2 || true
  fi
done
if pgrep -x pgbouncer -u postgres >/dev/null 2>&1 && [ -f /etc/pgbouncer/pgbouncer.ini ] && pgrep -f '/etc/pgbouncer/pgbouncer.ini' >/dev/null; then
  pkill -f '/etc/pgbouncer/pgbouncer.ini' || true
fi

# --- zfs-fuse ---------------------------------------------------------------------------
# A zfs-fuse that runs in another root (a chroot, a container) answers nobody here: what
# counts is whether ZFS answers, and whether a daemon runs in THIS root.
runs_here() {
  local p
  for p in $(pgrep -x "$1"); do [ "$(readlink "/proc/$p/root")" = / ] && return 0; done
  return 1
}
if ! runs_here zfs-fuse; then
  say "starting the zfs-fuse daemon"
  [ -e /dev/fuse ] || die "/dev/fuse is missing: zfs-fuse needs FUSE"
  mkdir -p /var/run/zfs
  # A pid file left by a daemon that did not stop cleanly (a reboot, a killed VM) makes
  # zfs-fuse exit 1 without a word. No zfs-fuse process runs, so the file is stale.
  rm -f /run/zfs-fuse.pid /var/run/zfs-fuse.pid
  zfs-fuse --pidfile /run/zfs-fuse.pid >&2 || die "zfs-fuse did not start"
  for _ in $(seq 1 50); do zpool list >/dev/null 2>&1 && break; sleep 0.2; done
  zpool list >/dev/null 2>&1 || die "zfs-fuse started but 'zpool list' fails"
  # Pools created earlier on files come back after an import.
  for img in /var/tmp/understudy-pools/*.img; do
    [ -e "$img" ] || continue
    zpool import -d /var/tmp/understudy-pools -a >&2 2>/dev/null || true
    break
  done
fi

# --- cron (SnapshotSchedule installs /etc/cron.d entries) -------------------------------
if ! runs_here cron; then
  say "starting cron"
  /usr/sbin/cron >&2 || die "cron did not start"
fi

# --- Pulumi CLI -------------------------------------------------------------------------
pulumi_bin=$(bash "$here/build-pulumi.sh")

# --- moto (a real AWS API server for the EBS tests) and actionlint (the CI recipe's lint) ---
cache="${UNDERSTUDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/understudy}"
moto_version=5.2.1
moto_dir="$cache/moto-$moto_version"
if [ ! -f "$moto_dir/.complete" ]; then
  say "installing moto $moto_version (Python venv in $moto_dir)"
  rm -rf "$moto_dir"
  /usr/bin/python3 -m venv "$moto_dir" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
  "$moto_dir/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version" >&2 \
    || { rm -rf "$moto_dir"; die "pip install moto failed"; }
  touch "$moto_dir/.complete"
fi
actionlint_version=1.7.12
actionlint_dir="$cache/actionlint-v$actionlint_version"
if [ ! -x "$actionlint_dir/actionlint" ]; then
  say "building actionlint v$actionlint_version from Go modules"
  GOBIN="$actionlint_dir" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@v$actionlint_version" >&2 \
    || die "go install actionlint failed"
fi

# --- sshd for the SSH tests -------------------------------------------------------------
bash "$here/setup-sshd.sh" >&2

# --- npm --------------------------------------------------------------------------------
cd "$root"
if [ ! -d node_modules/@pulumi/pulumi ] || [ package.json -nt node_modules/.package-lock.json ]; then
  say "installing npm dependencies"
  npm install --no-audit --no-fund --loglevel=error >&2 || die "npm install failed"
fi
# The shims that Pulumi stores in state require the package by name; inside this repo the
# package resolves to itself.
[ -L node_modules/pulumi-understudy ] || ln -sfn .. node_modules/pulumi-understudy
say "compiling TypeScript"
npx --no-install tsc -p tsconfig.json >&2 || die "TypeScript compilation failed"

state="${UNDERSTUDY_STATE:-$HOME/.cache/understudy/state}"
mkdir -p "$state"
cat <<ENV
export PATH="$pulumi_bin:\$PATH"
export UNDERSTUDY_PULUMI_BIN="$pulumi_bin"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true
export UNDERSTUDY_STATE="$state"
export UNDERSTUDY_MOTO_SERVER="$moto_dir/bin/moto_server"
export UNDERSTUDY_ACTIONLINT="$actionlint_dir/actionlint"
export UNDERSTUDY_CHROMIUM=/usr/bin/chromium
ENV
say "ready in $(( $(date +%s) - t0 )) s (pulumi $("$pulumi_bin/pulumi" version))"
