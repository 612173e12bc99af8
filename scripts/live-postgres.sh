#!/usr/bin/env bash
# The embedded "live" database used by the demo and the tests: a file-backed zfs-fuse pool,
# a dataset holding a PostgreSQL 13 cluster (PGDATA = <mount>/main), pgbench data plus a
# varied schema, and optionally a writer that keeps committing.
#
#   live-postgres.sh up     POOL PORT [SCALE]   create (idempotent) and start
#   live-postgres.sh writer POOL PORT [RATE]    start a pgbench writer (RATE tx/s, default 20)
#   live-postgres.sh stop-writer POOL
#   live-postgres.sh down   POOL PORT           stop everything and destroy the pool
#
# Progress goes to stderr. Runs as root; PostgreSQL runs as `postgres`.
set -euo pipefail
cmd=${1:?usage: live-postgres.sh up|writer|stop-writer|down POOL PORT}
pool=${2:?pool name}
port=${3:-54313}
here=$(cd "$(dirname "$0")" && pwd)
bin=/usr/lib/postgresql/13/bin
img_dir=/var/tmp/understudy-pools
img=$img_dir/$pool.img
mnt=/srv/$pool
pgdata=$mnt/pg13/main
sock=/var/run/postgresql
say() { printf '[live %s] %s\n' "$pool" "$*" >&2; }
# From /, so that a repository under /root (mode 700) does not make every command say "could
# not change directory".
as_pg() { (cd / && runuser -u postgres -- "$@"); }

case "$cmd" in
up)
  scale=${4:-10}
  mkdir -p "$img_dir" "$sock"; chown postgres:postgres "$sock"
  if ! zpool list -H -o name "$pool" >/dev/null 2>&1; then
    if [ -e "$img" ]; then zpool import -d "$img_dir" "$pool" >&2 || true; fi
  fi
  if ! zpool list -H -o name "$pool" >/dev/null 2>&1; then
    say "creating pool $pool on $img (sparse, 20 GB)"
    truncate -s 20G "$img"
    zpool create -f -m "$mnt" "$pool" "$img"
  fi
  zfs list -H -o name "$pool/pg13" >/dev/null 2>&1 || zfs create "$pool/pg13"
  zfs list -H -o name "$pool/rehearsals" >/dev/null 2>&1 || zfs create "$pool/rehearsals"
  chown postgres:postgres "$mnt/pg13"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    say "initdb PostgreSQL 13 in $pgdata (data checksums on)"
    as_pg "$bin/initdb" -D "$pgdata" --data-checksums --locale=C.UTF-8 --encoding=UTF8 -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # zfs-fuse renames a file over another in two steps: for a moment the name is missing
    # (measured: a quarter of opens during concurrent renames fail with ENOENT; none on ext4).
    # PostgreSQL's logical decoding renames a snapshot file into place, then
    # fsyncs it by name; with several walsenders (one slot per database) one can find it
    # missing and PANIC, restarting the server. On this pool only: report it as an ERROR
    # (that walsender ends and its subscriber reconnects). A promotion carries the setting
    # to the new live with the rest of live's configuration.
    printf '\n# zfs-fuse: rename is not atomic (see scripts/live-postgres.sh)\ndata_sync_retry = on\n' | as_pg tee -a "$pgdata/postgresql.conf" >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    say "starting PostgreSQL 13 on port $port"
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$mnt/pg13/server.log" -w -o "-p $port -k $sock -c listen_addresses=''" start >/dev/null
  fi
  if ! as_pg "$bin/psql" -X -h "$sock" -p "$port" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname='app'" | grep -q 1; then
    say "loading pgbench data (scale $scale) and a varied schema into database app"
    as_pg "$bin/createdb" -h "$sock" -p "$port" app
    as_pg "$bin/pgbench" -h "$sock" -p "$port" -i -q -s "$scale" app >&2 2>/dev/null
    PGOPTIONS="-c client_min_messages=warning" as_pg "$bin/psql" -X -q -h "$sock" -p "$port" -d app -v ON_ERROR_STOP=1 -f - < "$here/../examples/sql/varied-schema.sql" >/dev/null
  fi
  say "live: PostgreSQL 13 on port $port (socket $sock), data $pgdata on dataset $pool/pg13"
  ;;
writer)
  rate=${4:-20}
  pidf=/run/understudy-writer-$pool.pid
  if [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null; then say "writer already running"; exit 0; fi
  # Its own process group, so that stop-writer ends runuser and pgbench together.
  setsid runuser -u postgres -- "$bin/pgbench" -h "$sock" -p "$port" -n -c 2 -T 86400 -R "$rate" app >/dev/null 2>&1 &
  echo $! > "$pidf"
  say "writer started: pgbench, $rate transactions/s (process group $!)"
  ;;
stop-writer)
  pidf=/run/understudy-writer-$pool.pid
  if [ -f "$pidf" ]; then
    pg=$(cat "$pidf")
    # Signal the group only while its leader is still our writer: once the writer has ended
    # (pgbench exits when live stops), its pid is soon reused (pid_max is often 32768), and
    # that group may be anything, a PostgreSQL server started with pg_ctl (setsid) included.
    # (The leader is runuser with our pgbench's arguments, -T 86400 as the writer starts it.)
    ours() { case "$(ps -o args= -p "$pg" 2>/dev/null)" in *pgbench*" -T 86400 "*) return 0;; *) return 1;; esac; }
    if ours; then
      kill -TERM -- "-$pg" 2>/dev/null || true
      for _ in $(seq 1 50); do ours || break; sleep 0.1; done
      if ours; then kill -KILL -- "-$pg" 2>/dev/null || true; fi
      say "writer stopped"
    else
      say "writer had already ended (pid file removed; process group $pg not signalled)"
    fi
    rm -f "$pidf"
  fi
  ;;
down)
  "$0" stop-writer "$pool"
  if [ -f "$pgdata/PG_VERSION" ]; then as_pg "$bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true; fi
  # zfs-fuse can report "busy" for a moment after the server's files are closed.
  for _ in $(seq 1 20); do
    zpool list -H -o name "$pool" >/dev/null 2>&1 || break
    zpool destroy -f "$pool" 2>/dev/null && break
    sleep 0.5
  done
  if zpool list -H -o name "$pool" >/dev/null 2>&1; then say "could not destroy pool $pool (busy); image $img kept"; exit 1; fi
  rm -f "$img"
  say "destroyed"
  ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac
