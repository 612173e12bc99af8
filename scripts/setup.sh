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
for b in /usr/sbin/zfs-fuse /usr/lib/postgresql/13/bin/pg_ctl /usr/lib/postgresql/15/bin/pg_upgrade /usr/sbin/pgbouncer /usr/sbin/sshd /usr/sbin/cron; do
  [ -x "$b" ] || need+=("$b")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages (missing: ${need[*]})"
  if ! grep -rqs "bullseye" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding the bullseye suite for postgresql-13 (bookworm stays the default release)"
    mirror=$(grep -rhoE 'https?://[^ ]+/debian/?' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -1)
    mirror=${mirror:-http://deb.debian.org/debian}
    cat > /etc/apt/sources.list.d/understudy-bullseye.sources <<SRC
Types: deb
URIs: ${mirror%/}
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    echo 'APT::Default-Release "bookworm";' > /etc/apt/apt.conf.d/99understudy-default-release
  fi
  apt-get update -qq >&2 || die "apt-get update failed: check the Debian mirror in /etc/apt/sources.list.d/"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq zfs-fuse postgresql-13 postgresql-15 pgbouncer openssh-server cron >&2 \
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
if ! pgrep -x zfs-fuse >/dev/null; then
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
if ! pgrep -x cron >/dev/null; then
  say "starting cron"
  /usr/sbin/cron >&2 || die "cron did not start"
fi

# --- Pulumi CLI -------------------------------------------------------------------------
pulumi_bin=$(bash "$here/build-pulumi.sh")

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
ENV
say "ready in $(( $(date +%s) - t0 )) s (pulumi $("$pulumi_bin/pulumi" version))"
