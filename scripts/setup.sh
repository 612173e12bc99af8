#!/usr/bin/env bash
# Installs and starts what Understudy's demo, tests or benchmarks need, on a fresh Debian 12
# machine (as root) or one that already has it. Idempotent: a second run takes a second or two.
#
#   bash scripts/setup.sh [demo|test|bench]      (default: test)
#
#   demo, bench  zfs-fuse (package and daemon), PostgreSQL 13 (bullseye) and 15, PgBouncer,
#                cron (package and daemon), the Pulumi CLI (built from Go modules, cached),
#                npm dependencies and the compiled package (dist/)
#   test         all of that, and the test tools: sshd on 127.0.0.1:2222 with a test key,
#                sudo, lvm2, xfsprogs, chromium, shellcheck, moto (a real AWS API server, in a
#                Python venv), actionlint
#
# What it prints: on stderr one line per step that has work to do, with its time
# (`[setup] PostgreSQL 13 and 15, PgBouncer … 48 s`), after the path of the full log
# (~/.cache/understudy/logs/setup-<date>-<pid>.log); on a failure the last 30 lines of that
# log and what to do. On stdout only `export ...` lines, for the caller to eval (demo.sh,
# test.sh and bench.sh do). Two setups never run at once (a lock); the second waits.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
t0=$(date +%s)

profile=${1:-test}
case "$profile" in
  demo|test|bench) ;;
  *) printf 'usage: bash scripts/setup.sh [demo|test|bench]   (default: test)\n' >&2; exit 2 ;;
esac

cache="${UNDERSTUDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/understudy}"
logs="$cache/logs"
mkdir -p "$logs"
log="$logs/setup-$(date +%Y%m%d-%H%M%S)-$$.log"
# fd 3: the person (stderr); fd 4: the caller's stdout (export lines only); everything else,
# the output of every command, goes to the log.
exec 3>&2 4>&1
exec >>"$log" 2>&1
say() { printf '[setup] %s\n' "$*" >&3; }
echo "setup, profile $profile, started $(date -u '+%F %T') UTC by pid $$ in $root"
say "profile $profile; full log: $log"
# Keep the newest 20 logs.
find "$logs" -maxdepth 1 -name 'setup-*.log' -printf '%T@ %p\n' | sort -rn | tail -n +21 | cut -d' ' -f2- | xargs -r rm -f

if [ "$(id -u)" != 0 ]; then
  say "ERROR: run as root (it installs Debian packages and starts zfs-fuse); on a shared machine use a VM"
  exit 1
fi

# --- one step ------------------------------------------------------------------------------
# step [--daemon] "<title>" "<what to do if it fails>" <command...>
# Runs the command in a subshell (errexit on) with its output in the log, then prints the
# title and the time taken. --daemon: the step starts a daemon, so the lock's fd is closed
# for it (a daemon that inherited it would hold the lock forever: the next setup would wait).
step() {
  local daemon=0
  if [ "$1" = --daemon ]; then daemon=1; shift; fi
  local title=$1 hint=$2; shift 2
  local s rc
  s=$(date +%s)
  printf '\n=== %s (%s UTC)\n' "$title" "$(date -u +%T)"
  set +e
  if [ $daemon = 1 ]; then
    (set -e; "$@") </dev/null 3>&- 4>&- 9>&-
  else
    (set -e; "$@") </dev/null 3>&- 4>&-
  fi
  rc=$?
  set -e
  if [ $rc = 0 ]; then
    say "$title … $(( $(date +%s) - s )) s"
    return 0
  fi
  {
    printf '[setup] FAILED: %s (exit %s, after %s s)\n' "$title" "$rc" "$(( $(date +%s) - s ))"
    printf '[setup] last 30 lines of %s:\n' "$log"
    tail -n 30 "$log" | sed 's/^/    /'
    printf '[setup] what to do: %s\n' "$hint"
    printf "[setup] then run it again (bash scripts/setup.sh %s): the steps already done are skipped.\n" "$profile"
  } >&3
  exit 1
}

# --- the lock --------------------------------------------------------------------------------
exec 9>"$cache/setup.lock"
if ! flock -n 9; then
  say "another setup is running (lock $cache/setup.lock); waiting for it"
  flock 9
fi

# --- Debian packages ---------------------------------------------------------------------------
# Each group: the files that show it is installed, then its packages. procps and iproute2
# (pgrep, ps, ss) are used by setup and by the library itself.
base_files=(/usr/sbin/zfs-fuse /usr/sbin/cron /usr/bin/pgrep /usr/bin/ss)
base_pkgs=(zfs-fuse cron procps iproute2)
pg_files=(/usr/lib/postgresql/13/bin/pg_ctl /usr/lib/postgresql/15/bin/pg_upgrade /usr/sbin/pgbouncer)
pg_pkgs=(postgresql-13 postgresql-15 pgbouncer)
# The tests' tools: sshd and sudo (SSH to 127.0.0.1, a non-root login), lvm2 and xfsprogs
# (the EBS backend's volume assembly on loop devices), chromium (the timeline page),
# ShellCheck (actionlint's run: checks), python3-venv (moto's server).
test_files=(/usr/sbin/sshd /usr/bin/sudo /usr/sbin/lvm /usr/sbin/mkfs.xfs /usr/bin/chromium /usr/bin/shellcheck /usr/share/doc/python3-venv /usr/bin/strace)
test_pkgs=(openssh-server sudo lvm2 xfsprogs chromium shellcheck python3-venv strace)

missing() { local f; for f in "$@"; do [ -e "$f" ] || return 0; done; return 1; }
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}
need_base=0 need_pg=0 need_test=0
missing "${base_files[@]}" && need_base=1
missing "${pg_files[@]}" && need_pg=1
[ "$profile" = test ] && missing "${test_files[@]}" && need_test=1

if [ $need_base = 1 ] || [ $need_pg = 1 ] || [ $need_test = 1 ]; then
  lists() {
    if [ ! -e /usr/lib/postgresql/13/bin/pg_ctl ]; then bash "$here/setup-apt-sources.sh"; fi
    apt-get update
  }
  lists_title="Debian package lists"
  [ -e /usr/lib/postgresql/13/bin/pg_ctl ] || lists_title="Debian package lists (bullseye added for PostgreSQL 13)"
  step "$lists_title" \
    "read the error above; 'no Debian bookworm mirror found' means apt has no bookworm entry: add the stanza it shows. Network errors: check that this machine reaches its Debian mirror (apt-get update)." \
    lists
fi
[ $need_base = 1 ] && step "zfs-fuse and cron (Debian packages)" \
  "read the apt-get error above (a held or broken package: apt-get -f install)" apt_install "${base_pkgs[@]}"
[ $need_pg = 1 ] && step "PostgreSQL 13 and 15, PgBouncer (Debian packages; 13 from bullseye)" \
  "read the apt-get error above; if postgresql-13 is not found, check /etc/apt/sources.list.d/understudy-bullseye.sources and run apt-get update" \
  apt_install "${pg_pkgs[@]}"
[ $need_test = 1 ] && step "test tools: sshd, sudo, lvm2, xfsprogs, chromium, shellcheck, python3-venv, strace (Debian packages)" \
  "read the apt-get error above (a held or broken package: apt-get -f install)" apt_install "${test_pkgs[@]}"

# The packages create and start 'main' clusters and a pgbouncer service we do not use.
main_clusters_online() {
  pg_lsclusters -h 2>/dev/null | awk '($1=="13" || $1=="15") && $2=="main" && $4 ~ /^online/' | grep -q .
}
packaged_pgbouncer() { pgrep -u postgres -f '/etc/pgbouncer/pgbouncer.ini' >/dev/null 2>&1; }
stop_packaged() {
  local v
  for v in 13 15; do
    if pg_lsclusters -h 2>/dev/null | awk -v v=$v '$1==v && $2=="main" && $4 ~ /^online/' | grep -q .; then
      pg_ctlcluster "$v" main stop
    fi
  done
  if packaged_pgbouncer; then pkill -u postgres -f '/etc/pgbouncer/pgbouncer.ini' || true; fi
}
if main_clusters_online || packaged_pgbouncer; then
  step "stopping the packages' own PostgreSQL 'main' clusters and PgBouncer (unused)" \
    "stop them by hand (pg_ctlcluster 13 main stop; pg_ctlcluster 15 main stop)" stop_packaged
fi

# --- daemons ---------------------------------------------------------------------------------
start_zfs_fuse() {
  [ -e /dev/fuse ] || { echo "/dev/fuse is missing: zfs-fuse needs FUSE"; exit 1; }
  mkdir -p /var/run/zfs
  # zfs-fuse takes a lock in /var/lock and exits 1 without a word when it cannot: on a
  # machine (or a fresh root) whose /run is empty, /var/lock -> /run/lock points nowhere.
  if [ ! -d /var/lock ]; then
    if [ -L /var/lock ]; then mkdir -p "$(readlink -f /var/lock)"; else mkdir -p /var/lock; fi
  fi
  # A pid file left by a daemon that did not stop cleanly (a reboot, a killed VM) makes
  # zfs-fuse exit 1 without a word too. No zfs-fuse process runs, so the file is stale.
  rm -f /run/zfs-fuse.pid /var/run/zfs-fuse.pid
  zfs-fuse --pidfile /run/zfs-fuse.pid || {
    echo "zfs-fuse exited with status $? (it gives no reason: a missing /var/lock or /var/run/zfs, a stale pid file, no /dev/fuse)"
    exit 1
  }
  local _
  for _ in $(seq 1 50); do zpool list >/dev/null 2>&1 && break; sleep 0.2; done
  zpool list >/dev/null || { echo "zfs-fuse started but 'zpool list' fails"; exit 1; }
  # Pools created earlier on files come back after an import.
  if compgen -G '/var/tmp/understudy-pools/*.img' >/dev/null; then
    zpool import -d /var/tmp/understudy-pools -a || true
  fi
}
# A zfs-fuse or cron running in another root (a chroot such as fresh-machine.sh's, a
# container) serves nobody here: only a daemon whose root is this one counts.
runs_here() {
  local p
  for p in $(pgrep -x "$1"); do [ "$(readlink "/proc/$p/root")" = / ] && return 0; done
  return 1
}
if ! runs_here zfs-fuse; then
  step --daemon "zfs-fuse daemon" \
    "zfs-fuse needs /dev/fuse and a writable /var/lock and /var/run; try 'zfs-fuse --no-daemon' by hand to see its error" \
    start_zfs_fuse
fi
# A zfs-fuse that died (killed, or a wedged one killed on purpose) leaves its mounts behind:
# every access to them fails with "Transport endpoint is not connected", and the new daemon
# cannot mount the pool's datasets over them. Those mounts (in this mount namespace only) are
# lazily unmounted and the datasets mounted again.
dead_zfs_mounts() {
  local _dev mnt type _rest err
  while read -r _dev mnt type _rest; do
    [ "$type" = fuse.zfs ] || continue
    # (No pipe into grep: under pipefail, stat's own failure would fail the test.)
    if ! err=$(stat -- "$mnt" 2>&1 >/dev/null); then
      case "$err" in *"not connected"*) echo "$mnt" ;; esac
    fi
  done </proc/self/mounts
}
remount_dead() {
  local m _n
  # Shallowest first: a lazy unmount detaches what is mounted under it too (a path under a
  # dead mount cannot even be looked up to unmount it on its own).
  for _n in $(seq 1 100); do
    m=$(dead_zfs_mounts | sort | head -n 1)
    [ -n "$m" ] || break
    echo "unmounting $m (left by a zfs-fuse that stopped)"
    umount -l -- "$m"
  done
  zfs mount -a
}
if [ -n "$(dead_zfs_mounts)" ]; then
  step "mounting again the datasets a stopped zfs-fuse left unreachable" \
    "unmount them by hand (umount -l <mountpoint>) and run 'zfs mount -a'" remount_dead
fi
# SnapshotSchedule installs /etc/cron.d entries.
if ! runs_here cron; then
  step --daemon "cron daemon" "start it by hand (/usr/sbin/cron) and read its error" /usr/sbin/cron
fi

# --- Pulumi CLI ------------------------------------------------------------------------------
pulumi_version="${UNDERSTUDY_PULUMI_VERSION:-3.248.0}"
if ! bash "$here/build-pulumi.sh" --check >/dev/null; then
  step "Pulumi CLI v$pulumi_version (built from Go modules; first run only)" \
    "it needs Go >= 1.25.11 and the Go module proxy (go env GOPROXY); the go error is above" \
    bash "$here/build-pulumi.sh"
fi
pulumi_bin=$(bash "$here/build-pulumi.sh" --check)

# --- the test tools --------------------------------------------------------------------------
moto_version=5.2.1
moto_dir="$cache/moto-$moto_version"
actionlint_version=1.7.12
actionlint_dir="$cache/actionlint-v$actionlint_version"
if [ "$profile" = test ]; then
  install_moto() {
    # Made in place (a venv that is moved breaks its scripts), marked complete at the end.
    rm -rf "$moto_dir"
    /usr/bin/python3 -m venv "$moto_dir"
    "$moto_dir/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version" || { rm -rf "$moto_dir"; exit 1; }
    touch "$moto_dir/.complete"
  }
  if [ ! -f "$moto_dir/.complete" ]; then
    step "moto $moto_version (a Python venv in $moto_dir)" \
      "it needs python3-venv and PyPI (pip install); the pip error is above" install_moto
  fi
  install_actionlint() {
    # Private Go caches, removed afterwards: nothing of the build stays on the machine. (A
    # global name: the step's subshell runs the EXIT trap after this function has returned.)
    al_tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/understudy-actionlint.XXXXXX")
    trap 'rm -rf "$al_tmp"' EXIT
    GOMODCACHE="$al_tmp/mod" GOCACHE="$al_tmp/cache" GOBIN="$actionlint_dir.tmp" GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local \
      go install "github.com/rhysd/actionlint/cmd/actionlint@v$actionlint_version"
    rm -rf "$actionlint_dir"
    mv "$actionlint_dir.tmp" "$actionlint_dir"
  }
  if [ ! -x "$actionlint_dir/actionlint" ]; then
    step "actionlint v$actionlint_version (go install)" \
      "it needs Go and the Go module proxy (go env GOPROXY); the go error is above" install_actionlint
  fi
  # sshd for the SSH tests: setup-sshd.sh is idempotent (it also checks that the test key logs
  # in); a line is printed only when there was something to start.
  ssh_port=${UNDERSTUDY_SSH_PORT:-2222}
  if ss -Hltn "sport = :$ssh_port" 2>/dev/null | grep -q "127.0.0.1:$ssh_port" && [ -s "$HOME/.cache/understudy/ssh/id_ed25519" ]; then
    printf '\n=== sshd check\n'
    bash "$here/setup-sshd.sh" </dev/null 3>&- 4>&- 9>&- || step --daemon "sshd on 127.0.0.1:$ssh_port (test key)" \
      "read the setup-sshd error above" bash "$here/setup-sshd.sh"
  else
    step --daemon "sshd on 127.0.0.1:$ssh_port (test key)" "read the setup-sshd error above" bash "$here/setup-sshd.sh"
  fi
fi

# --- npm and the compiled package ----------------------------------------------------------------
cd "$root"
if [ ! -d node_modules/@pulumi/pulumi ] || [ ! -f node_modules/.package-lock.json ] ||
   [ package.json -nt node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm_deps() {
    if [ -d node_modules ]; then npm install --no-audit --no-fund --loglevel=error; else npm ci --no-audit --no-fund --loglevel=error; fi
  }
  step "npm dependencies" "read the npm error above (the npm registry must be reachable)" npm_deps
fi
# The shims that Pulumi stores in state require the package by name; inside this repo the
# package resolves to itself.
[ -L node_modules/pulumi-understudy ] || ln -sfn .. node_modules/pulumi-understudy
# tsc only when a source is newer than the compiled package (tsc rewrites every output).
sources_changed() {
  [ -f dist/understudy.js ] || return 0
  [ -n "$(find understudy.ts index.ts config.ts providers components tools tsconfig.json package.json \
           -newer dist/understudy.js \( -name '*.ts' -o -name '*.json' \) -print -quit 2>/dev/null)" ]
}
if sources_changed; then
  step "TypeScript compiled into dist/" "fix the type errors above (npx tsc -p tsconfig.json)" \
    npx --no-install tsc -p tsconfig.json
fi

state="${UNDERSTUDY_STATE:-$HOME/.cache/understudy/state}"
mkdir -p "$state"
{
  echo "export PATH=\"$pulumi_bin:\$PATH\""
  echo "export UNDERSTUDY_PULUMI_BIN=\"$pulumi_bin\""
  echo "export PULUMI_SKIP_UPDATE_CHECK=true"
  echo "export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true"
  echo "export PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK=true"
  echo "export UNDERSTUDY_STATE=\"$state\""
  if [ "$profile" = test ]; then
    echo "export UNDERSTUDY_MOTO_SERVER=\"$moto_dir/bin/moto_server\""
    echo "export UNDERSTUDY_ACTIONLINT=\"$actionlint_dir/actionlint\""
    echo "export UNDERSTUDY_CHROMIUM=/usr/bin/chromium"
  fi
} >&4
echo "setup done in $(( $(date +%s) - t0 )) s"
say "ready in $(( $(date +%s) - t0 )) s (pulumi $("$pulumi_bin/pulumi" version))"
