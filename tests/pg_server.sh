#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests: Debian's postgresql (initdb + pg_ctl) in a folder of its own under
# /tmp (DIR/pg_path names it: a test's folder may not be open to the server's user), listening on a Unix socket in
# that folder only (no TCP), trust authentication, fsync off (a test's data).
#   pg_server.sh start DIR   prints the libpq connection string; exit 77 when the server binaries are absent
#   pg_server.sh stop DIR    stops it and removes its folder
#   pg_server.sh restart DIR SECONDS   stops it (fast: sessions are cut), waits SECONDS, starts it again (a restart
#                            or an outage of the database, for the tests of the service's faults)
# As root, the server runs as the unprivileged user "postgres" (Debian's package creates it; else "nobody"):
# PostgreSQL refuses to run as root.
set -euo pipefail
cmd=${1:-} dir=${2:-} pause=${3:-0}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: pg_server.sh start|stop DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ] || [ ! -x "$bin/pg_ctl" ]; then
  echo "pg_server.sh: PostgreSQL's server binaries are not installed (apt-get install postgresql)" >&2
  exit 77
fi
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    local user=postgres
    id -u postgres >/dev/null 2>&1 || user=nobody
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}
case "$cmd" in
start)
  mkdir -p "$dir"
  home=$(mktemp -d /tmp/cvx-pg-XXXXXX)
  echo "$home" >"$dir/pg_path"
  mkdir -p "$home/sock"
  if [ "$(id -u)" -eq 0 ]; then
    user=postgres
    id -u postgres >/dev/null 2>&1 || user=nobody
    chown -R "$user" "$home"
  fi
  dir=$home
  as_owner "$bin/initdb" -D "$dir/data" -A trust -U cvx -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir/sock -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "host=$dir/sock user=cvx dbname=postgres"
  ;;
stop)
  [ -f "$dir/pg_path" ] || exit 0
  home=$(cat "$dir/pg_path")
  case "$home" in /tmp/cvx-pg-*) ;; *) echo "pg_server.sh: $dir/pg_path: not a server folder" >&2; exit 1 ;; esac
  [ -d "$home/data" ] && as_owner "$bin/pg_ctl" -D "$home/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$home" "$dir/pg_path"
  ;;
restart)
  home=$(cat "$dir/pg_path")
  case "$home" in /tmp/cvx-pg-*) ;; *) echo "pg_server.sh: $dir/pg_path: not a server folder" >&2; exit 1 ;; esac
  as_owner "$bin/pg_ctl" -D "$home/data" -m fast -w stop >/dev/null
  sleep "$pause"
  as_owner "$bin/pg_ctl" -D "$home/data" -l "$home/server.log" -w -t 60 \
    -o "-k $home/sock -c listen_addresses= -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$home/server.log" >&2; exit 1; }
  ;;
*) echo "pg_server.sh: start, stop or restart, not $cmd" >&2; exit 2 ;;
esac
