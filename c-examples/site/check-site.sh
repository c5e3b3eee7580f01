#!/usr/bin/env bash
# Checks an example server on the demo site with real HTTP requests: every location's status,
# headers and body, a body over client_max_body_size, concurrent sleeps, then a clean stop.
#
#   check-site.sh SITE.json SERVER-COMMAND...
#
# The server command gets `--listen 127.0.0.1:0 SITE.json` appended, must print
# "listening on http://HOST:PORT/" once it listens, and must exit 0 on SIGTERM (under valgrind,
# valgrind's exit code tells whether it found errors). Run by ctest (example.http_server...).
set -uo pipefail

site=$1
shift
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -KILL "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# Each case starts with a name (`request NAME ...` or `begin NAME`); it passes unless `fail` is
# called before the next one starts.
passed=0
failed=0
current=
case_failed=0
end_case() {
  if [ -n "$current" ]; then
    if [ $case_failed -eq 0 ]; then
      passed=$((passed + 1))
      echo "ok: $current"
    else
      failed=$((failed + 1))
    fi
  fi
  current=
  case_failed=0
}
begin() {
  end_case
  current=$1
}
fail() {
  echo "FAIL: $current: $*"
  case_failed=1
}

"$@" --listen 127.0.0.1:0 "$site" >"$work/stdout" 2>"$work/stderr" &
server_pid=$!
base=
for _ in $(seq 1 600); do
  base=$(sed -n 's|.*listening on \(http://[^ ]*\)/ .*|\1|p' "$work/stdout")
  [ -n "$base" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server exited before listening:"
    cat "$work/stdout" "$work/stderr"
    exit 1
  fi
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "the server did not listen within 60 s"
  exit 1
fi
echo "server: $base"

# request NAME CURL-ARGS... : sends one request; sets $status, $body, $elapsed_ms and the
# headers file the expect_* functions read.
request() {
  begin "$1"
  shift
  local started=$(date +%s%N)
  status=$(curl -sS --max-time 30 -o "$work/body" -D "$work/headers" -w '%{http_code}' "$@" 2>"$work/curl-error")
  local rc=$?
  elapsed_ms=$((($(date +%s%N) - started) / 1000000))
  body=$(cat "$work/body" 2>/dev/null; printf x)
  body=${body%x}
  tr -d '\r' <"$work/headers" >"$work/headers.txt" 2>/dev/null
  if [ $rc -ne 0 ]; then
    fail "curl failed: $(cat "$work/curl-error")"
    return 1
  fi
  return 0
}

# The value of a response header (the first one, names compared case-insensitively).
header() {
  awk -v name="$1" 'BEGIN { IGNORECASE = 1 } index(tolower($0), tolower(name) ": ") == 1 { sub(/^[^:]*: /, ""); print; exit }' "$work/headers.txt"
}

# check STATUS BODY [HEADER...]: BODY is the exact body, * for any, or ~REGEX (bash) to match.
check() {
  local expected_status=$1 expected_body=$2
  shift 2
  [ "$status" = "$expected_status" ] || fail "status $status, expected $expected_status"
  if [ "${expected_body:0:1}" = "~" ]; then
    [[ $body =~ ${expected_body:1} ]] || fail "body $(printf %q "$body") does not match $(printf %q "${expected_body:1}")"
  elif [ "$expected_body" != "*" ] && [ "$body" != "$expected_body" ]; then
    fail "body $(printf %q "$body"), expected $(printf %q "$expected_body")"
  fi
  local pair name value
  for pair in "$@"; do # "Name: value" must be there; "!Name" must not
    name=${pair%%:*}
    value=${pair#*: }
    if [ "${pair:0:1}" = "!" ]; then
      name=${pair:1}
      grep -qi "^$name:" "$work/headers.txt" && fail "unexpected header $name: $(header "$name")"
    elif [ "$(header "$name")" != "$value" ]; then
      fail "header $name: '$(header "$name")', expected '$value'"
    fi
  done
}

page() { # sets $page to the error page the servers make for a status, as nginx does
  printf -v page '<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>luaengine</center>\r\n</body>\r\n</html>\r\n' "$1" "$1"
}

request "static index with default_type" "$base/" &&
  check 200 $'libluaengine demo site: /hello /old /private/ /counter /api/ /sleep /headers /page /shout\n' \
    "Content-Type: text/plain"
request "hello (content_file)" "$base/hello" && check 200 $'hello, world!\n' "Content-Type: text/plain"
request "hello with an argument" "$base/hello?name=Ada" && check 200 $'hello, Ada!\n'
request "HEAD hello" -I "$base/hello" && check 200 "*" "Content-Type: text/plain" "Content-Length: 14"
request "rewrite jumps to /hello" "$base/old" && check 200 $'hello, world!\n'
page "401 Unauthorized"
request "access denies without the token" "$base/private/room" &&
  check 401 "$page" 'WWW-Authenticate: Token realm="demo"' "Content-Type: text/html"
request "access lets the token in" -H "X-Token: let-me-in" "$base/private/room" &&
  check 200 $'welcome, demo-user, to /private/room\n'
request "shared dict counter" "$base/counter" && check 200 $'~^hits: 1\n'
sleep 0.3
request "init_worker's timers tick" "$base/counter" && check 200 '~ticks: ([2-9]|[1-9][0-9]+)'
request "API with uri args" "$base/api/things?b=x&a=1&a=2" &&
  check 200 $'{"args":{"a":["1","2"],"b":"x"},"method":"GET","path":"/api/things"}\n' "Content-Type: application/json"
request "API with a form body (read_body)" --data "name=Ada&lang=lua" "$base/api/form" &&
  check 200 $'{"args":{},"form":{"lang":"lua","name":"Ada"},"method":"POST","path":"/api/form"}\n'
request "API refuses other methods" -X DELETE "$base/api/x" && check 405 $'{"error":"use GET or POST"}\n'
head -c 70000 /dev/zero | tr '\0' a >"$work/big"
page "413 Request Entity Too Large"
request "body over client_max_body_size" --data-binary "@$work/big" "$base/api/form" &&
  check 413 "$page"
request "chunked body over client_max_body_size" -H "Transfer-Encoding: chunked" --data-binary "@$work/big" \
  "$base/api/form" && check 413 "*"
request "sleep" "$base/sleep?ms=200" && check 200 $'slept 200 ms\n' "X-Slept-Ms: 200" &&
  { [ $elapsed_ms -ge 190 ] || fail "answered after $elapsed_ms ms"; }
request "sleep refuses a bad duration" "$base/sleep?ms=99999" && check 400 "*"
request "header filter on a script's response" "$base/headers" &&
  check 200 $'see the response headers\n' "X-Content-Type-Options: nosniff" "X-Frame-Options: DENY" "!X-Internal-Token"
request "both filters on a static response" "$base/page" &&
  check 200 $'<p>a static page</p>\n<!-- filtered by luaengine -->\n' "Content-Type: text/html" "X-Frame-Options: DENY"
request "body filter on a script's body" "$base/shout" && check 200 $'HELLO FROM /SHOUT\n'
page "404 Not Found"
request "location without content or static" "$base/nothing" && check 404 "$page"
request "no location" "$base/nowhere" && check 404 "$page"

# Eight sleeps at once: the server's threads are not held by them, so they overlap.
begin "eight concurrent sleeps of 500 ms"
started=$(date +%s%N)
pids=()
for i in 1 2 3 4 5 6 7 8; do
  curl -sS --max-time 30 -o "$work/sleep$i" "$base/sleep?ms=500" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || fail "a request failed"; done
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
for i in 1 2 3 4 5 6 7 8; do
  [ "$(cat "$work/sleep$i")" = "slept 500 ms" ] || fail "sleep $i answered '$(cat "$work/sleep$i")'"
done
[ $elapsed_ms -lt 3000 ] || fail "took $elapsed_ms ms"

# By now the log phase of the four /hello requests (HEAD too, and /old ends there) has run.
request "counter after the log phases" "$base/counter" && check 200 $'~^hits: 3\nhello logged: 4\n'

# A sleep still waiting when the server stops is cancelled, not waited for.
curl -sS --max-time 30 -o /dev/null "$base/sleep?ms=5000" 2>/dev/null &
sleeper=$!
sleep 0.5
begin "stops cleanly on SIGTERM"
kill -TERM "$server_pid"
wait "$server_pid"
rc=$?
server_pid=
wait "$sleeper" 2>/dev/null
if [ $rc -ne 0 ]; then
  fail "exit status $rc"
  cat "$work/stderr"
fi
begin "log phase logged"
if ! grep -q "served /hello with status 200" "$work/stderr"; then
  fail "no log line from the log phase in the server's stderr"
  cat "$work/stderr"
fi
end_case

echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
