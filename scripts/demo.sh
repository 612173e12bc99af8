#!/usr/bin/env bash
# `npm run demo`: the whole story on the embedded default, on this machine.
#  1. installs what is missing (scripts/setup.sh),
#  2. builds a "live" PostgreSQL 13 on a file-backed zfs-fuse pool, with pgbench data, a
#     varied schema, and a writer that keeps committing,
#  3. rehearses the upgrade 13 -> 15 on a clone through `pulumi up` (stack `demo`, local backend),
#  4. prints the report and where everything is.
# Running it again re-uses what exists: `pulumi up` then has nothing to do.
#
#   npm run demo              rehearse (and show the report)
#   npm run demo -- promote   set understudy:promote=true and run `pulumi up`: clients of the
#                             PgBouncer endpoint (127.0.0.1:6432) move to the upgraded clone
#                             while a pgbench writer keeps committing through it
#   npm run demo -- promote logical
#                             the same with the logical method: the upgraded clone catches up
#                             with live by logical replication while clients keep working, and
#                             clients are held only for the last transactions. First makes the
#                             user's changes the method needs on live (wal_level = logical, a
#                             restart of live; a replica identity for pgbench_history), saying so
#   npm run demo -- rollback  set understudy:promote=false: back to PostgreSQL 13
#   npm run demo -- down      remove all of it: the stack, every server on the pool, the demo's
#                             PgBouncer, the pool and its image (Pulumi.demo.yaml stays)
set -euo pipefail
action=${1:-rehearse}
method=${2:-}
case "$action" in rehearse|promote|rollback|down) ;; *) echo "usage: npm run demo [-- promote [replay|logical]|rollback|down]" >&2; exit 2 ;; esac
case "$method" in ""|replay|logical) ;; *) echo "usage: npm run demo -- promote [replay|logical]" >&2; exit 2 ;; esac
if [ -n "$method" ] && [ "$action" != promote ]; then echo "a method goes with promote only (npm run demo -- promote $method)" >&2; exit 2; fi
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }

say "1/4 setup (packages, zfs-fuse, Pulumi CLI, npm)"
# Two steps, so that a failed setup stops here (an eval of a failed "$(...)" would not).
env_lines=$(bash scripts/setup.sh demo)
eval "$env_lines"
export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-understudy-demo}"
export PULUMI_BACKEND_URL="file://$UNDERSTUDY_STATE"

if [ "$action" = down ]; then
  # `pulumi destroy` alone hands a promoted or rolled-back setup over (it keeps the new live,
  # live's final snapshots and PgBouncer: clients may depend on them). The demo owns the
  # whole pool, so here everything goes.
  say "down: pulumi destroy --stack demo"
  if pulumi stack select demo >/dev/null 2>&1; then
    # The next `npm run demo` starts again from a rehearsal, not a promotion.
    pulumi config set --stack demo --type bool understudy:promote false
    pulumi destroy --stack demo --yes --skip-preview --non-interactive
    pulumi stack rm demo --yes --preserve-config --non-interactive >/dev/null
  fi
  say "down: servers on the pool, PgBouncer, the pool"
  if zpool list -H -o name understudy >/dev/null 2>&1; then
    while read -r pid_file; do
      dir=$(dirname "$pid_file")
      v=$(cat "$dir/PG_VERSION" 2>/dev/null || true)
      [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ] || continue
      echo "stopping PostgreSQL $v on $dir" >&2
      runuser -u postgres -- "/usr/lib/postgresql/$v/bin/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
    done < <(find "$(zfs get -H -o value mountpoint understudy)" -maxdepth 5 -name postmaster.pid 2>/dev/null)
  fi
  bouncer=/var/lib/understudy/pgbouncer/demo
  if [ -f "$bouncer/pgbouncer.pid" ] && kill "$(cat "$bouncer/pgbouncer.pid")" 2>/dev/null; then
    echo "stopped the demo PgBouncer (127.0.0.1:6432)" >&2
  fi
  rm -rf "$bouncer"
  bash scripts/live-postgres.sh down understudy 54313
  rm -rf understudy-reports
  exit 0
fi

say "2/4 the live database (PostgreSQL 13 on zfs-fuse pool 'understudy', port 54313)"
if [ "$action" = rehearse ]; then
  bash scripts/live-postgres.sh up understudy 54313 10
  # A writer straight on live: it keeps committing while the clone is rehearsed.
  bash scripts/live-postgres.sh writer understudy 54313 20
else
  # Promotion stops live: clients must come through the endpoint (the pgbench below).
  bash scripts/live-postgres.sh stop-writer understudy
fi

say "3/4 pulumi up: snapshot, clone, rehearse 13 -> 15 step by step (stack 'demo', state in $UNDERSTUDY_STATE)"
pulumi stack select demo >/dev/null 2>&1 || pulumi stack init demo >/dev/null
export TS_NODE_TRANSPILE_ONLY=true
rc=0
writer_log=""
if [ "$action" != rehearse ]; then
  want=$([ "$action" = promote ] && echo true || echo false)
  if [ "$action" = promote ]; then
    if [ "$method" = logical ]; then
      live_psql() { runuser -u postgres -- /usr/lib/postgresql/13/bin/psql -X -q -At -h /var/run/postgresql -p 54313 "$@"; }
      say "the logical method needs two changes on live: they are yours to make (Understudy never restarts live); the demo makes them now"
      if [ "$(live_psql -d postgres -c 'SHOW wal_level')" != logical ]; then
        echo "  ALTER SYSTEM SET wal_level = logical, then a restart of live (pg_ctl restart)" >&2
        live_psql -d postgres -c "ALTER SYSTEM SET wal_level = logical"
        live_mnt=$(zfs get -H -o value mountpoint understudy/pg13)
        runuser -u postgres -- /usr/lib/postgresql/13/bin/pg_ctl -D "$live_mnt/main" -l "$live_mnt/server.log" -m fast -w restart >/dev/null
      fi
      if [ "$(live_psql -d app -c "SELECT relreplident FROM pg_class WHERE oid = 'public.pgbench_history'::regclass")" != f ]; then
        echo "  ALTER TABLE pgbench_history REPLICA IDENTITY FULL (it has no primary key)" >&2
        live_psql -d app -c "ALTER TABLE pgbench_history REPLICA IDENTITY FULL"
        # A rehearsal made before that change has a clone without it, and the logical
        # rehearsal checks its copy of live: it would refuse. Rehearse again from scratch
        # (the stack's resources only: live, its pool and PgBouncer stay).
        urns=$(pulumi stack --stack demo --show-urns 2>/dev/null || true)
        if case "$urns" in *ZfsClone*) true ;; *) false ;; esac; then
          say "the rehearsal's clone predates that change: pulumi destroy, then the rehearsal runs again in this pulumi up"
          pulumi destroy --stack demo --yes --skip-preview --non-interactive --suppress-outputs | grep -E "Resources|deleted|error" || true
        fi
      fi
      pulumi config set --stack demo understudy:method logical
      # The demo's schema has large objects and a materialized view: accepted by name.
      pulumi config set --stack demo --path 'understudy:logical.accept[0]' large-objects
      pulumi config set --stack demo --path 'understudy:logical.accept[1]' materialized-views
    elif [ "$method" = replay ]; then
      pulumi config set --stack demo understudy:method replay
      pulumi config rm --stack demo understudy:logical >/dev/null 2>&1 || true
    fi
  fi
  pulumi config set --stack demo --type bool understudy:promote "$want"
  say "pulumi preview: the reviewed change"
  pulumi preview --stack demo --non-interactive --diff 2>&1 | grep -E "promote|method|~|Resources|update|not ready|error" || true
  writer_log=$(mktemp)
  writer_stop="$writer_log.stop"
  # Clients through the endpoint during the whole `pulumi up` (a logical promotion prepares
  # for a minute or more before it holds them): 10-second pgbench runs until the up is done.
  # Every failed transaction would show here.
  (
    while [ ! -e "$writer_stop" ]; do
      runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -h 127.0.0.1 -p 6432 -n -c 2 -T 10 app >> "$writer_log" 2>&1 || echo "pgbench exited with status $?" >> "$writer_log"
    done
  ) &
  writer_pid=$!
  sleep 2
fi
pulumi up --stack demo --yes --skip-preview --non-interactive --suppress-outputs || rc=$?
endpoint_json=$(pulumi stack output endpoint --stack demo --json 2>/dev/null || true)
if [ -n "$writer_log" ]; then
  touch "$writer_stop"
  wait "$writer_pid" || true
  say "pgbench through PgBouncer during the whole pulumi up"
  awk '/actually processed/ { split($0, a, ": "); split(a[2], b, "/"); done += b[1]; runs++ }
       /number of failed transactions/ { split($0, a, ": "); split(a[2], b, " "); failed += b[1] }
       /exited with status/ { errors++ }
       END { printf "%d runs of 10 s, 2 clients: %d transactions, %d failed%s\n", runs, done, failed, errors ? sprintf(", %d runs exited with an error (see above)", errors) : "" }' "$writer_log"
  grep -E "exited with status|error|ERROR" "$writer_log" | sort | uniq -c | head -5 || true
  rm -f "$writer_log" "$writer_stop"
  if [ -n "$endpoint_json" ]; then echo "$endpoint_json"; fi
fi

say "4/4 report"
if [ $rc -eq 0 ]; then
  pulumi stack output reportMarkdown --stack demo
else
  latest=$(ls -t understudy-reports/*.md 2>/dev/null | head -1 || true)
  [ -n "$latest" ] && cat "$latest"
fi
bash scripts/live-postgres.sh stop-writer understudy
served=$(runuser -u postgres -- /usr/lib/postgresql/15/bin/psql -X -At -h 127.0.0.1 -p 6432 -d app -c "SELECT current_setting('server_version')" 2>/dev/null || echo "?")
# What to say next depends on where the endpoint points: rehearsed only, promoted, rolled back.
read -r state port < <(printf '%s' "$endpoint_json" | node -e '
  let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
    try { const o = JSON.parse(s); console.log(`${o.state ?? "?"} ${o.target?.port ?? "?"}`); } catch { console.log("? ?"); }
  });' || echo "? ?") || state="?"
discard="PULUMI_BACKEND_URL=$PULUMI_BACKEND_URL PULUMI_CONFIG_PASSPHRASE=$PULUMI_CONFIG_PASSPHRASE pulumi destroy --stack demo"
{
  echo
  echo "Endpoint: PgBouncer on 127.0.0.1:6432 (database app) is served by PostgreSQL $served now."
  if [ "$state" = promoted ]; then
    echo "Live:     PostgreSQL 15 on port $port, on a clone under understudy/rehearsals (zfs list -r understudy/rehearsals)"
    if [ "$(pulumi config get --stack demo understudy:method 2>/dev/null || true)" = logical ]; then
      echo "Old live: PostgreSQL 13, dataset understudy/pg13, still running, read-only; it receives every write made on 15 (the way back)"
    else
      echo "Old live: PostgreSQL 13, dataset understudy/pg13, stopped and kept as it was at the cut-over"
    fi
    echo "Report:   understudy-reports/demo.md and .json; the cut-over's phases: pulumi stack output endpoint --stack demo"
    if [ "$(pulumi config get --stack demo understudy:method 2>/dev/null || true)" = logical ]; then
      echo "Roll back: npm run demo -- rollback   (clients back on PostgreSQL 13 with every write made on 15)"
    else
      echo "Roll back: npm run demo -- rollback   (clients back on PostgreSQL 13; writes made on 15 since the cut-over stay on its dataset)"
    fi
    echo "Destroy:  $discard"
    echo "          hands over: PgBouncer and PostgreSQL 15 keep serving (README: Promotion)"
  else
    echo "Live:     PostgreSQL 13 on port 54313, dataset understudy/pg13 (never written by a rehearsal)"
    echo "Clone:    zfs list -t all -r understudy/rehearsals"
    echo "Upgraded: PostgreSQL 15 on the clone, port 55432 (psql -h /var/run/postgresql -p 55432 app, as the postgres user)"
    echo "Report:   understudy-reports/demo.md and .json; also \`pulumi stack output report --stack demo\`"
    [ "$state" = rolled-back ] && echo "Rolled back: the PostgreSQL 15 that served after the promotion is stopped and kept under understudy/rehearsals"
    echo "Promote:  npm run demo -- promote   (sets understudy:promote: true in Pulumi.demo.yaml, shows the preview, runs pulumi up while pgbench writes through PgBouncer)"
    echo "Discard:  $discard"
  fi
  echo "Remove all: npm run demo -- down   (stack, servers, PgBouncer, the pool and its image)"
} >&2
exit $rc
