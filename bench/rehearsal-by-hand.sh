#!/usr/bin/env bash
# The upgrade rehearsal done by hand: what an admin would script without Understudy, step for
# step the same work as UpgradeRehearsal (13 -> 15, --link), so that bench/rehearsal-vs-script.ts
# can compare the two. Not a tool: no resume, no report, little validation.
#
#   rehearsal-by-hand.sh POOL SOURCE_PORT BASE_PORT [NAME]
#
# Source: PostgreSQL 13 on dataset POOL/pg13 (PGDATA = <mount>/main, socket /var/run/postgresql,
# port SOURCE_PORT), as scripts/live-postgres.sh builds it. The clone is POOL/rehearsals/NAME.
# Ports: BASE_PORT old server for recovery and counts, +1/+2 pg_upgrade's old/new servers,
# +3 the upgraded PostgreSQL 15. Sockets go to a private directory under /tmp.
#
# stdout: one line per step, `step <name> <ms>`, then `total <ms>` (everything before cleanup),
# `cleanup <ms>`; progress goes to stderr. Cleans up (servers stopped, clone and snapshot
# destroyed) on success and on failure; exit status is the rehearsal's.
set -euo pipefail
pool=${1:?usage: rehearsal-by-hand.sh POOL SOURCE_PORT BASE_PORT [NAME]}
src_port=${2:?source port}
base=${3:?base port}
name=${4:-byhand}
old_bin=/usr/lib/postgresql/13/bin
new_bin=/usr/lib/postgresql/15/bin
src_ds=$pool/pg13
clone_ds=$pool/rehearsals/$name
snap=$src_ds@$name-$(date +%s)
p_old=$base p_up_old=$((base + 1)) p_up_new=$((base + 2)) p_new=$((base + 3))

say() { printf '[by-hand %s] %s\n' "$name" "$*" >&2; }
as_pg() { (cd / && runuser -u postgres -- "$@"); }
now() { date +%s%3N; }
# psql on a server in the private socket dir: unaligned, tuples only, stop at the first error.
q() { local port=$1 db=$2; shift 2; as_pg "$1/psql" -X -q -A -t -F $'\t' -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "$db" "${@:2}"; }

# Same facts UpgradeRehearsal's checks measure (rowCounts exact + checksum of pgbench_branches):
# every table's row count in every database, then the checksum. One line per fact, sorted.
COUNTS="SELECT current_database() || '.' || n.nspname || '.' || c.relname,
  (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
   AND NOT (c.relkind = 'm' AND NOT c.relispopulated) ORDER BY 1"
CHECKSUM="SELECT 'checksum public.pgbench_branches', count(*)::text || ':' || coalesce(md5(string_agg(h, '' ORDER BY h)), '-')
  FROM (SELECT md5(x::text) AS h FROM public.pgbench_branches x) s"
facts() { # facts PORT BIN -> stdout
  local port=$1 bin=$2 db
  for db in $(q "$port" postgres "$bin" -c "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1"); do
    q "$port" "$db" "$bin" -c "$COUNTS"
  done
  q "$port" app "$bin" -c "$CHECKSUM"
}

t_begin=$(now)
t_step=$t_begin
declare -A ms
order=()
done_step() { # done_step NAME: snapshot the clone, record the step's time
  local n=$1
  zfs snapshot "$clone_ds@$n"
  local t; t=$(now)
  ms[$n]=$((t - t_step)); order+=("$n"); t_step=$t
  say "$n: ${ms[$n]} ms"
}

sock=$(mktemp -d /tmp/usbr-sock.XXXXXX)
chown postgres:postgres "$sock"; chmod 0700 "$sock"
mnt=""
cleanup() {
  local rc=$? t0; t0=$(now)
  set +e
  trap - EXIT
  if [ -n "$mnt" ]; then
    for d in "$mnt/main.pg15" "$mnt/main"; do
      [ -f "$d/postmaster.pid" ] || continue
      # Only a server running in this very directory (not the source's copied pid file).
      pid=$(head -1 "$d/postmaster.pid")
      if [ -n "$pid" ] && [ "$(readlink -e "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -e "$d")" ]; then
        bin=$old_bin; [ "$d" = "$mnt/main.pg15" ] && bin=$new_bin
        as_pg "$bin/pg_ctl" -D "$d" -m fast -w stop >/dev/null
      fi
    done
  fi
  if zfs list -H -o name "$clone_ds" >/dev/null 2>&1; then
    for i in $(seq 1 15); do zfs destroy -r "$clone_ds" 2>/dev/null && break; sleep 1; done
  fi
  if zfs list -H -o name -t snapshot "$snap" >/dev/null 2>&1; then
    for i in $(seq 1 15); do zfs destroy "$snap" 2>/dev/null && break; sleep 1; done
  fi
  rm -rf "$sock"
  echo "cleanup $(($(now) - t0))"
  [ $rc -ne 0 ] && say "FAILED (exit $rc); cleaned up"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. snapshot + clone: CHECKPOINT on the source (the only thing done to it), snapshot, clone.
say "CHECKPOINT on the source, snapshot $snap, clone $clone_ds"
as_pg "$old_bin/psql" -X -q -h /var/run/postgresql -p "$src_port" -d postgres -c CHECKPOINT
zfs snapshot "$snap"
zfs clone "$snap" "$clone_ds"
mnt=$(zfs get -H -o value mountpoint "$clone_ds")
old=$mnt/main new=$mnt/main.pg15 work=$mnt/main.pg15-pg_upgrade
t=$(now); ms[clone]=$((t - t_step)); order+=(clone); t_step=$t

# 2. recover: PG 13 on the clone (copied pid file removed), crash recovery, baseline, clean stop.
rm -f "$old/postmaster.pid"
opts13="-p $p_old -k $sock -c listen_addresses='' -c archive_mode=off -c external_pid_file='' -c stats_temp_directory=pg_stat_tmp"
as_pg "$old_bin/pg_ctl" -D "$old" -l "$mnt/recover.log" -w -t 3600 -o "$opts13" start >/dev/null
facts "$p_old" "$old_bin" > "$mnt/baseline.txt"
as_pg "$old_bin/pg_ctl" -D "$old" -m fast -w stop >/dev/null
as_pg "$old_bin/pg_controldata" -D "$old" | grep -q "^Database cluster state: *shut down$"
say "baseline: $(wc -l < "$mnt/baseline.txt") facts"
done_step s01-recover

# 3. check: initdb PG 15 with the old cluster's options, pg_upgrade --check.
as_pg "$new_bin/initdb" -D "$new" --data-checksums --locale=C.UTF-8 --encoding=UTF8 -U postgres -A trust >/dev/null
install -d -o postgres -g postgres -m 0700 "$work"
upgrade() { (cd "$work" && runuser -u postgres -- env LC_ALL=C "$new_bin/pg_upgrade" -b "$old_bin" -B "$new_bin" -d "$old" -D "$new" \
  -p "$p_up_old" -P "$p_up_new" -U postgres -s "$sock" -o "-c archive_mode=off -c external_pid_file=''" "$@" >/dev/null); }
upgrade --link --check
done_step s02-check

# 4. upgrade: pg_upgrade --link; carry pg_hba.conf / pg_ident.conf over.
upgrade --link
cp "$old/pg_hba.conf" "$old/pg_ident.conf" "$new/" && chown postgres:postgres "$new/pg_hba.conf" "$new/pg_ident.conf"
done_step s03-upgrade

# 5. start PG 15 (CHECKPOINT before each snapshot while it runs, as the library does).
as_pg "$new_bin/pg_ctl" -D "$new" -l "$mnt/pg15.log" -w -o "-p $p_new -k $sock -c listen_addresses=''" start >/dev/null
q "$p_new" postgres "$new_bin" -c CHECKPOINT
done_step s04-start

# 6. post-upgrade: update_extensions.sql when pg_upgrade wrote one.
if [ -f "$work/update_extensions.sql" ]; then q "$p_new" postgres "$new_bin" -f "$work/update_extensions.sql"; fi
q "$p_new" postgres "$new_bin" -c CHECKPOINT
done_step s05-post-upgrade

# 7. analyze.
as_pg "$new_bin/vacuumdb" -h "$sock" -p "$p_new" -U postgres --all --analyze-in-stages >/dev/null
q "$p_new" postgres "$new_bin" -c CHECKPOINT
done_step s06-analyze

# 8. verify: the same facts on PG 15, compared with the baseline.
facts "$p_new" "$new_bin" > "$mnt/after.txt"
if ! diff -u "$mnt/baseline.txt" "$mnt/after.txt" >&2; then say "verification FAILED"; exit 3; fi
say "verify: $(wc -l < "$mnt/after.txt") facts equal"
q "$p_new" postgres "$new_bin" -c CHECKPOINT
done_step s07-verify

for n in "${order[@]}"; do echo "step $n ${ms[$n]}"; done
echo "total $(($(now) - t_begin))"
