#!/usr/bin/env bash
# Smoke check of a running stack (scripts/stack.sh up first): every view on
# every server, a request parked in /slow/ while another is served, the
# PostgreSQL statement log, the cache shared by all servers.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
eval "$("$here/stack.sh" env)"

fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# get URL: prints "CODE BODY"
get() {
  local out code
  out="$(curl -s --max-time 30 -w '\n%{http_code}' "$1")"
  code="${out##*$'\n'}"
  out="${out%$'\n'*}"
  echo "$code ${out%$'\n'}"
}

servers="apache-main=$KRAIT_APACHE_MAIN_URL apache-sub=$KRAIT_APACHE_SUB_URL
gunicorn-gthread=$KRAIT_GUNICORN_GTHREAD_URL gunicorn-sync=$KRAIT_GUNICORN_SYNC_URL
gunicorn-venv=$KRAIT_GUNICORN_VENV_URL"

for s in $servers; do
  name="${s%%=*}" url="${s#*=}"
  r="$(get "$url/health/")"; [ "$r" = "200 ok" ] && ok "$name /health/" || bad "$name /health/: $r"
  r="$(get "$url/info/")"; [ "${r%% *}" = 200 ] && ok "$name /info/ ${r#200 }" || bad "$name /info/: $r"
  r="$(curl -s --max-time 30 "$url/orders/?limit=5")"
  case "$r" in *"<h1>5 orders</h1>"*ORD-0*) ok "$name /orders/" ;; *) bad "$name /orders/: ${r:0:200}" ;; esac
  r="$(curl -s --max-time 60 "$url/stream/?delay=0" | tail -1)"
  [ "$r" = "# 20000 rows" ] && ok "$name /stream/" || bad "$name /stream/: $r"
  r="$(get "$url/cached/")"
  case "$r" in "200 {\"orders\": 20000"*) ok "$name /cached/ ${r#200 }" ;; *) bad "$name /cached/: $r" ;; esac

  # Park a request in pg_sleep, serve another one meanwhile.
  start=$(date +%s.%N)
  curl -s --max-time 30 -o "/tmp/krait-smoke-slow.$$" "$url/slow/?s=3" &
  slow_pid=$!
  sleep 0.5
  t0=$(date +%s.%N)
  r="$(get "$url/health/")"
  t1=$(date +%s.%N)
  wait "$slow_pid"
  end=$(date +%s.%N)
  during=$(awk -v a="$t1" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
  total=$(awk -v a="$end" -v b="$start" 'BEGIN { printf "%.3f", a - b }')
  if [ "$r" = "200 ok" ] && awk -v d="$during" -v t="$total" 'BEGIN { exit !(d < 1 && t >= 3) }' &&
    [ "$(cat "/tmp/krait-smoke-slow.$$")" = "slept 3" ]; then
    ok "$name /slow/?s=3 took ${total}s; /health/ meanwhile ${during}s"
  else
    bad "$name /slow/?s=3 took ${total}s ($(cat "/tmp/krait-smoke-slow.$$")); /health/ meanwhile ${during}s: $r"
  fi
  rm -f "/tmp/krait-smoke-slow.$$"
done

for app in apache-krait-main apache-krait-sub krait-gthread krait-sync krait-venv; do
  if grep -q "app=$app LOG:  statement: SELECT pg_sleep(3" "$KRAIT_PG_LOG" &&
    grep -q "app=$app LOG:  statement: SELECT .* INNER JOIN \"shop_customer\"" "$KRAIT_PG_LOG" &&
    grep -q "app=$app LOG:  statement: DECLARE" "$KRAIT_PG_LOG"; then
    ok "statement log has $app's pg_sleep, JOIN and server-side cursor"
  else
    bad "statement log lacks queries from $app ($KRAIT_PG_LOG)"
  fi
done

[ "$fail" = 0 ] && echo "smoke: all passed" || { echo "smoke: FAILED"; exit 1; }
