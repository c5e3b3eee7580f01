#!/usr/bin/env bash
# Compares the Lua layer's cost per request in nginx + lua-nginx-module (Debian's packages, on
# OpenResty's LuaJIT) and in our C HTTP server (c-examples/http-server) with libluaengine, in
# CPU instructions counted by callgrind. See bench/README.md for what the numbers mean.
#
#   bench/openresty-compare/run.sh
#
# Environment:
#   CASES="hello auth dict"                    the Lua cases (static, the baseline, always runs)
#   SERVERS="nginx ours-luajit ours-lua54"     the servers
#   OUT=bench/openresty-compare/out            where the callgrind files, table.md and work/ go
#
# Each server serves SMALL and then LARGE keep-alive requests on one connection, each time in a
# fresh process under callgrind; (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL) is its cost per
# request, startup and shutdown cancel out. A case's Lua layer cost is that minus the same
# server's cost for a static response.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
CASES=${CASES:-hello auth dict}
SERVERS=${SERVERS:-nginx ours-luajit ours-lua54}
OUT=${OUT:-$here/out}
SMALL=100
LARGE=1100

for case in $CASES; do
  case $case in hello | auth | dict) ;; *) echo "unknown case '$case' (hello auth dict)" >&2; exit 2 ;; esac
done
for server in $SERVERS; do
  case $server in nginx | ours-luajit | ours-lua54) ;; *) echo "unknown server '$server' (nginx ours-luajit ours-lua54)" >&2; exit 2 ;; esac
done

# The last run's server output, curl output and nginx prefix: kept, for a look after a failure.
work=$OUT/work
server_pid=
trap '[ -z "$server_pid" ] || kill -KILL "$server_pid" 2>/dev/null' EXIT

"$root/scripts/install-deps.sh" --openresty
rm -rf "$work"
mkdir -p "$work"

# Our server from the CMake preset of a backend (Release: cargo build --release, C at -O3).
declare -A binary
for server in $SERVERS; do
  [ "$server" = nginx ] && continue
  preset=${server#ours-}
  echo "building http-server ($preset)"
  (cd "$root" && cmake --preset "$preset" >/dev/null && cmake --build --preset "$preset" --target http-server)
  binary[$server]=$root/build/$preset/c-examples/http-server/http-server
done

fail() {
  echo "$*" >&2
  echo "--- server stdout:" >&2
  cat "$work/stdout" >&2
  echo "--- server stderr:" >&2
  cat "$work/stderr" >&2
  exit 1
}

free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
  done
}

# start SERVER CALLGRIND-FILE: starts it under callgrind and sets $base once it listens.
start() {
  local server=$1 file=$2 port
  local valgrind=(valgrind --tool=callgrind --callgrind-out-file="$file")
  if [ "$server" = nginx ]; then
    port=$(free_port)
    rm -rf "$work/nginx" && mkdir "$work/nginx"
    sed -e "s|@PREFIX@|$work/nginx|g" -e "s|@PORT@|$port|g" "$here/nginx.conf" >"$work/nginx/nginx.conf"
    "${valgrind[@]}" nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -e stderr >"$work/stdout" 2>"$work/stderr" &
  else
    "${valgrind[@]}" "${binary[$server]}" --listen 127.0.0.1:0 "$here/site.json" >"$work/stdout" 2>"$work/stderr" &
  fi
  server_pid=$!
  base=
  for _ in $(seq 1 1200); do
    kill -0 "$server_pid" 2>/dev/null || fail "$server exited before listening"
    if [ "$server" = nginx ]; then
      # A bare connect: it costs nginx one accept and close, the same in both runs of a case.
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && base=http://127.0.0.1:$port
    else
      base=$(sed -n 's|.*listening on \(http://[^ ]*\)/ .*|\1|p' "$work/stdout")
    fi
    [ -n "$base" ] && return
    sleep 0.1
  done
  fail "$server did not listen within 120 s"
}

# stop SERVER: the graceful stop (nginx: SIGQUIT, ours: SIGTERM), after which callgrind writes
# its file.
stop() {
  local signal=TERM rc=0
  [ "$1" = nginx ] && signal=QUIT
  kill -"$signal" "$server_pid"
  wait "$server_pid" || rc=$?
  server_pid=
  [ $rc -eq 0 ] || fail "$1 exited with status $rc"
}

# requests CASE N: one request whose body is checked, then N more on the same connection.
requests() {
  local case=$1 n=$2 expected headers=()
  case $case in
    static | hello) expected='^hello$' ;;
    auth) expected='^hello u1 /auth$' headers=(-H 'x-token: secret') ;;
    dict) expected='^[0-9]+nilfalse$' ;; # ngx.say prints all of incr's results: 1, nil, false
  esac
  curl -sS "${headers[@]}" -w '%{http_code} %{num_connects}\n' \
    -o "$work/body" "$base/$case?check" -o /dev/null "$base/$case?[1-$n]" >"$work/curl" ||
    fail "curl failed on /$case"
  local body
  body=$(cat "$work/body")
  [[ $body =~ $expected ]] && [ "$(wc -c <"$work/body")" -eq $((${#body} + 1)) ] ||
    fail "/$case answered $(printf %q "$(cat "$work/body")"), expected /$expected/ and a newline"
  local summary
  summary=$(awk '$1 == 200 { ok++ } { connects += $2 } END { print NR, ok + 0, connects }' "$work/curl")
  [ "$summary" = "$((n + 1)) $((n + 1)) 1" ] ||
    fail "/$case: expected $((n + 1)) answers of status 200 on 1 connection, got (answers, 200s, connections) $summary"
}

# The instructions a callgrind file counted, all threads.
instructions() {
  awk '$1 == "totals:" { print $2; found = 1 } END { exit !found }' "$1" || { echo "no totals in $1" >&2; exit 1; }
}

declare -A per_request
for server in $SERVERS; do
  for case in static $CASES; do
    ir=()
    for n in $SMALL $LARGE; do
      file=$OUT/$server-$case-$n.callgrind
      start "$server" "$file"
      requests "$case" "$n"
      stop "$server"
      ir+=("$(instructions "$file")")
    done
    per_request[$server,$case]=$(((ir[1] - ir[0]) / (LARGE - SMALL)))
    echo "$server $case: ${per_request[$server,$case]} instructions per request"
  done
done

# Lua layer cost of a case on a server, or "-" when it was not run.
layer() {
  local static=${per_request[$1,static]:-} case=${per_request[$1,$2]:-}
  if [ -n "$static" ] && [ -n "$case" ]; then echo $((case - static)); else echo -; fi
}
ratio() {
  if [ "$1" != - ] && [ "$2" != - ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; else echo -; fi
}

changes=
# (Documentation changes do not change the numbers.)
git -C "$root" diff --quiet HEAD -- . ':(exclude)*.md' || changes=" (with uncommitted changes)"
{
  echo "$(date -u +%F), libluaengine $(git -C "$root" rev-parse --short HEAD)$changes, $(nginx -v 2>&1 | sed 's/^nginx version: //'),"
  dpkg-query -W -f='${Package} ${Version}, ' libnginx-mod-http-lua libluajit2-5.1-2 lua-resty-core libmicrohttpd12
  valgrind --version
  echo
  echo "| case | nginx Lua layer | ours luajit | ratio | ours lua54 | ratio |"
  echo "|---|---:|---:|---:|---:|---:|"
  for case in $CASES; do
    nginx=$(layer nginx "$case")
    luajit=$(layer ours-luajit "$case")
    lua54=$(layer ours-lua54 "$case")
    echo "| $case | $nginx | $luajit | $(ratio "$luajit" "$nginx") | $lua54 | $(ratio "$lua54" "$nginx") |"
  done
  echo
  echo "Static response, whole server, instructions per request:"
  for server in $SERVERS; do
    echo "- ${server}: ${per_request[$server,static]}"
  done
} | tee "$OUT/table.md"
echo
echo "callgrind files and table.md: $OUT"
