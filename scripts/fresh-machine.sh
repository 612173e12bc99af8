#!/usr/bin/env bash
# What a new user sees on a new machine: builds a clean Debian 12 root, clones this
# repository into it (the HEAD commit of the worktree this script is in) and runs the README's
# first command there.
#
#   bash scripts/fresh-machine.sh                    setup (demo profile), then `npm run demo`,
#                                                    then `npm run demo -- down`
#   bash scripts/fresh-machine.sh --profile test     setup (test profile) only, then checks that
#                                                    moto answers, chromium renders headless and
#                                                    actionlint runs
#   --keep   keep the root (its path is printed) instead of removing it
#
# The root: `mmdebstrap --variant=minbase bookworm` with apt's sources laid out exactly like a
# new machine's (this machine's deb822 debian.sources only, no sources.list) and this
# machine's apt settings for the mirror; then what a new machine of this kind has
# preinstalled: git, python3, a PostgreSQL client (Debian packages), Node 20 + npm and Go
# (copied from this machine), this machine's CA certificates and registry settings (npm, Go,
# pip). Nothing from ~/.cache. Only the Debian tarball is cached, in
# /var/cache/understudy-fresh (UNDERSTUDY_FRESH_CACHE), keyed by what goes into it.
#
# It runs in its own mount and PID namespaces: its zfs-fuse, cron and PostgreSQL servers are
# its own, and this machine's zfs-fuse and pools are left alone (the fuse.zfs mounts the
# namespace inherits are unmounted in it at once, so that it never pins them). Setup runs
# with this machine's network (it downloads); the demo itself runs in a network namespace of
# its own with only a loopback (its ports cannot meet this machine's, and it proves the demo
# downloads nothing).
#
# Prints one line per step with its time and, at the end, `fresh machine: demo passed in N s`
# or the failing step with the tail of its log. Exit status 0 only when it passed.
set -euo pipefail
profile=demo
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:-}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: bash scripts/fresh-machine.sh [--profile demo|test] [--keep]" >&2; exit 2 ;;
  esac
done
case "$profile" in demo|test) ;; *) echo "--profile: demo or test" >&2; exit 2 ;; esac

say() { printf '[fresh] %s\n' "$*" >&2; }
die() { printf '[fresh] ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (mmdebstrap, chroot, namespaces)"
for tool in mmdebstrap unshare chroot git node go ip; do
  command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install -y --no-install-recommends mmdebstrap util-linux iproute2)"
done
[ -e /dev/fuse ] || die "/dev/fuse is missing: zfs-fuse in the root needs it"

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
head=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "note: $repo has uncommitted changes; the fresh root gets the commit $head only"
fi
t0=$(date +%s)

# --- the Debian tarball (cached) ---------------------------------------------------------------
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || die "$sources not found: this script lays the root out like this machine's deb822 sources"
# This machine's apt settings that reach the mirror (proxy, CA, validity checks), if any.
aptconf=()
while IFS= read -r f; do aptconf+=("$f"); done < <(
  grep -liE '^[^/#]*(Proxy|CaInfo|Check-Valid-Until|Check-Date|Verify-Peer|Verify-Host|SslCert|SslKey)' /etc/apt/apt.conf.d/* 2>/dev/null | sort || true)
include=ca-certificates,git,python3,postgresql-client
cache=${UNDERSTUDY_FRESH_CACHE:-/var/cache/understudy-fresh}
key=$( { echo "minbase bookworm $include"; cat "$sources"; for f in "${aptconf[@]}"; do echo "$f"; cat "$f"; done; } | sha256sum | cut -c1-12)
tarball="$cache/bookworm-minbase-$key.tar"
mkdir -p "$cache"
work=$(mktemp -d /var/tmp/understudy-fresh.XXXXXX)
rootfs="$work/root"
logs="$work/logs"
mkdir -p "$logs"

# step <title> <log name> <command...>: runs the command with its output in the log, prints
# the title and its time, or the tail of the log and stops.
failed=""
step() {
  local title=$1 name=$2 s rc
  shift 2
  s=$(date +%s)
  set +e
  (set -e; "$@") >"$logs/$name.log" 2>&1 </dev/null
  rc=$?
  set -e
  if [ $rc = 0 ]; then
    say "$title … $(( $(date +%s) - s )) s"
    return 0
  fi
  say "FAILED: $title (exit $rc, after $(( $(date +%s) - s )) s); last 40 lines of $logs/$name.log:"
  tail -n 40 "$logs/$name.log" | sed 's/^/    /' >&2
  failed=$title
  return 1
}

cleanup() {
  local rc=$?
  if [ $keep = 1 ]; then
    say "kept: the root $rootfs, the logs $logs"
  elif [ -d "$rootfs" ]; then
    # Nothing was mounted in this namespace; the root's mounts died with its own.
    if grep -qF " $rootfs" /proc/self/mountinfo; then
      say "something is still mounted under $rootfs: not removing it (see /proc/self/mountinfo)"
    else
      rm -rf --one-file-system "$rootfs"
      if [ -z "$failed" ]; then rm -rf "$work"; else say "logs kept in $logs"; fi
    fi
  fi
  exit $rc
}
trap cleanup EXIT

build_tarball() {
  local opts=()
  for f in "${aptconf[@]}"; do opts+=("--aptopt=$f"); done
  mmdebstrap --variant=minbase --include="$include" "${opts[@]}" bookworm "$tarball.tmp" "$sources"
  mv "$tarball.tmp" "$tarball"
}
if [ ! -f "$tarball" ]; then
  step "Debian 12 minbase tarball (mmdebstrap; cached in $cache)" mmdebstrap build_tarball || exit 1
fi

# --- the root, as a new machine of this kind has it -------------------------------------------
make_root() {
  mkdir -p "$rootfs"
  tar -C "$rootfs" -xf "$tarball"
  # apt's sources exactly like a new machine's: the deb822 file, no sources.list.
  rm -f "$rootfs/etc/apt/sources.list" "$rootfs"/etc/apt/sources.list.d/*
  cp "$sources" "$rootfs/etc/apt/sources.list.d/debian.sources"
  rm -f "$rootfs/etc/apt/apt.conf.d/99mmdebstrap"
  for f in "${aptconf[@]}"; do cp "$f" "$rootfs/etc/apt/apt.conf.d/"; done
  # CA certificates this machine trusts (a TLS-inspecting egress reaches the registries).
  if compgen -G '/usr/local/share/ca-certificates/*' >/dev/null; then
    cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates
  fi
  # Node 20 + npm, and Go, as this machine has them.
  cp -a "$(readlink -f "$(command -v node)")" "$rootfs/usr/bin/node"
  mkdir -p "$rootfs/usr/lib/node_modules"
  cp -a /usr/lib/node_modules/npm "$rootfs/usr/lib/node_modules/"
  ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/bin/npm"
  ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/bin/npx"
  local goroot
  goroot=$(go env GOROOT)
  mkdir -p "$rootfs$(dirname "$goroot")"
  cp -a "$goroot" "$rootfs$goroot"
  # The registry settings of this kind of machine (not caches).
  mkdir -p "$rootfs/root/.config"
  [ -f /root/.npmrc ] && cp /root/.npmrc "$rootfs/root/.npmrc"
  [ -f /root/.config/go/env ] && mkdir -p "$rootfs/root/.config/go" && cp /root/.config/go/env "$rootfs/root/.config/go/env"
  [ -f /etc/pip.conf ] && cp /etc/pip.conf "$rootfs/etc/pip.conf"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # The repository, as a user clones it.
  git clone -q --no-hardlinks "$repo" "$rootfs/root/understudy"
  git -C "$rootfs/root/understudy" checkout -q --detach "$head"
  # What is preinstalled and what is not (for the log).
  ls "$rootfs/usr/lib/postgresql" 2>/dev/null || echo "no PostgreSQL server"
  ls "$rootfs/root/.cache" 2>/dev/null || echo "no ~/.cache"
}
step "clean root: Debian 12 minbase, Node $(node --version), $(go version | awk '{print $3}'), git clone of ${head:0:12}" root make_root || exit 1
gopath_bin="$(go env GOROOT)/bin"

# --- inside: its own mount and PID namespaces ----------------------------------------------------
# The runner, executed by `unshare`: it prints the step lines itself.
cat >"$work/inside.sh" <<'INSIDE'
#!/usr/bin/env bash
set -uo pipefail
rootfs=$1 logs=$2 profile=$3 gobin=$4
# First, before anything else: the host's fuse.zfs mounts, copied into this namespace, would
# keep the host's datasets busy for as long as it lives.
awk '{for(i=1;i<=NF;i++) if($i=="-" && $(i+1)=="fuse.zfs") print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
say() { printf '[fresh] %s\n' "$*" >&2; }
mount -t proc proc "$rootfs/proc"
mount -t sysfs sysfs "$rootfs/sys"
mount --rbind /dev "$rootfs/dev"
mount -t tmpfs -o mode=755 tmpfs "$rootfs/run"
[ -e "$rootfs/dev/fuse" ] || { say "/dev/fuse is not reachable in the root"; exit 1; }

in_root() { # in_root <command string>: a login-like environment, as root, in the clone
  chroot "$rootfs" /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8 \
    PATH="$gobin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    GIT_SSL_CAINFO=/etc/ssl/certs/ca-certificates.crt \
    UNDERSTUDY_SSH_PORT=29022 \
    bash -c "cd /root/understudy && $1"
}
export rootfs gobin
export -f in_root

run() { # run <title> <log> <command string> [offline]
  local title=$1 name=$2 cmd=$3 offline=${4:-} s rc
  s=$(date +%s)
  if [ -n "$offline" ]; then
    unshare --net bash -c 'ip link set lo up && in_root "$1"' _ "$cmd" >"$logs/$name.log" 2>&1 </dev/null
  else
    in_root "$cmd" >"$logs/$name.log" 2>&1 </dev/null
  fi
  rc=$?
  if [ $rc = 0 ]; then say "$title … $(( $(date +%s) - s )) s"; return 0; fi
  say "FAILED: $title (exit $rc, after $(( $(date +%s) - s )) s); last 40 lines of $logs/$name.log:"
  tail -n 40 "$logs/$name.log" | sed 's/^/    /' >&2
  echo "$title" >"$logs/FAILED"
  return 1
}

stop_daemons() {
  # zfs-fuse last: the servers on its pool go first (demo down stops them).
  local pid
  for name in cron sshd; do
    for pid in $(chroot "$rootfs" pgrep -x "$name" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  if pid=$(cat "$rootfs/run/zfs-fuse.pid" 2>/dev/null) && kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { say "zfs-fuse (pid $pid) did not stop in 20 s: killing it"; kill -9 "$pid"; }
  fi
  say "daemons of the root stopped (zfs-fuse, cron$([ "$profile" = test ] && echo ", sshd"))"
}

rc=0
if [ "$profile" = demo ]; then
  s=$(date +%s)
  # The README's first command, from a fresh clone. Setup downloads, so it runs first with the
  # network (the demo's own first step then finds everything done); the demo then runs
  # offline.
  run "setup (demo profile): bash scripts/setup.sh demo" setup "bash scripts/setup.sh demo >/dev/null" || rc=1
  if [ $rc = 0 ]; then
    run "npm run demo (offline, loopback only)" demo "npm run demo" offline || rc=1
    echo $(( $(date +%s) - s )) >"$logs/demo-seconds"
    # What a person saw before the rehearsal started: setup's lines, then the demo's up to
    # its step 3 (pulumi up).
    echo $(( $(wc -l <"$logs/setup.log") + $(awk '/3\/4 pulumi up/ {print NR; exit}' "$logs/demo.log") )) >"$logs/demo-lines"
  fi
  run "npm run demo -- down" down "npm run demo -- down" offline || rc=1
else
  run "setup (test profile): bash scripts/setup.sh test" setup "bash scripts/setup.sh test > /root/setup-env.sh" || rc=1
  if [ $rc = 0 ]; then
    run "moto answers (EC2 DescribeVolumes on 127.0.0.1:29050)" moto '
      . /root/setup-env.sh
      "$UNDERSTUDY_MOTO_SERVER" -H 127.0.0.1 -p 29050 >/tmp/moto.log 2>&1 & pid=$!
      trap "kill $pid" EXIT
      for i in $(seq 1 100); do
        node -e "fetch(\"http://127.0.0.1:29050/?Action=DescribeVolumes&Version=2016-11-15\", {headers: {authorization: \"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x\"}}).then(async (r) => { const t = await r.text(); console.log(r.status, t.slice(0, 200)); process.exit(r.status === 200 && t.includes(\"DescribeVolumesResponse\") ? 0 : 1); }, () => process.exit(2))" && exit 0
        sleep 0.3
      done
      cat /tmp/moto.log; exit 1' offline || rc=1
    run "chromium renders headless" chromium '
      . /root/setup-env.sh
      out=$("$UNDERSTUDY_CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --dump-dom "data:text/html,<title>t</title><p id=x>rendered</p><script>document.getElementById(\"x\").textContent += \" by script\"</script>" 2>/tmp/chromium.err)
      echo "$out"
      echo "$out" | grep -q "rendered by script" || { cat /tmp/chromium.err; exit 1; }' offline || rc=1
    run "actionlint runs (with shellcheck)" actionlint '
      . /root/setup-env.sh
      "$UNDERSTUDY_ACTIONLINT" -version
      mkdir -p /tmp/al/.github/workflows && cd /tmp/al
      printf "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \$FOO\n" > .github/workflows/w.yml
      out=$("$UNDERSTUDY_ACTIONLINT" -no-color .github/workflows/w.yml 2>&1) && { echo "actionlint found nothing in a script with an unquoted variable"; exit 1; }
      echo "$out"; echo "$out" | grep -q "shellcheck reported issue"' offline || rc=1
  fi
fi
stop_daemons
exit $rc
INSIDE

say "entering the root (own mount and PID namespaces)"
set +e
unshare --mount --pid --fork --propagation private bash "$work/inside.sh" "$rootfs" "$logs" "$profile" "$gopath_bin"
rc=$?
set -e
[ -f "$logs/FAILED" ] && failed=$(cat "$logs/FAILED")
[ $rc != 0 ] && [ -z "$failed" ] && failed="the run inside the root (exit $rc)"

# The host's pools must not be pinned by a namespace left behind.
# (This script runs in this machine's mount namespace; pid 1's may not be readable.)
here_ns=$(readlink /proc/self/ns/mnt)
leftover=$(grep -l fuse.zfs /proc/[0-9]*/mountinfo 2>/dev/null | while read -r f; do
  p=${f#/proc/}; p=${p%%/*}
  ns=$(readlink "/proc/$p/ns/mnt" 2>/dev/null) || continue
  [ "$ns" != "$here_ns" ] && echo "$p"
done | tr '\n' ' ' || true)
if [ -n "$leftover" ]; then
  say "WARNING: processes in other mount namespaces still see fuse.zfs mounts (they can pin this machine's pools): $leftover"
else
  say "no process in another mount namespace sees a fuse.zfs mount (this machine's pools are not pinned)"
fi

total=$(( $(date +%s) - t0 ))
if [ -z "$failed" ]; then
  if [ "$profile" = demo ]; then
    say "lines printed before the rehearsal started (setup + demo): $(cat "$logs/demo-lines" 2>/dev/null || echo '?'); setup + demo took $(cat "$logs/demo-seconds" 2>/dev/null || echo '?') s"
    echo "fresh machine: demo passed in $total s"
  else
    echo "fresh machine: test setup passed in $total s (moto, chromium, actionlint checked)"
  fi
else
  echo "fresh machine: FAILED at: $failed (after $total s; logs in $logs)"
  exit 1
fi
