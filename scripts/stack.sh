#!/usr/bin/env bash
# The production-like Django stack krait's end-to-end tests run against:
# PostgreSQL, memcached, Apache + mod_wsgi (two daemon process groups),
# gunicorn on Debian's python3.11 + Django 3.2 (gthread and sync), and
# gunicorn (WSGI) and uvicorn (ASGI) on a pyenv venv with Django 5.2.
# Everything listens on 127.0.0.1
# and lives under one directory; no system-wide service is touched.
#
#   scripts/stack.sh up       start what is not running, load the data, wait
#                             until every server answers /health/
#   scripts/stack.sh status   what runs, where, and whether it answers
#   scripts/stack.sh env      shell `export` lines (ports, PIDs, logs)
#   scripts/stack.sh down     stop everything, remove the stack directory
#
# Environment: KRAIT_STACK_DIR (default /tmp/krait-stack), KRAIT_STACK_PORT_BASE
# (default: the first of 18400, 18500, ... whose ports are all free),
# KRAIT_STACK_CACHE, KRAIT_STACK_VENV_PYTHON, PYENV_ROOT (see stack-deps.sh).
# testdata/django/README.md describes the layout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=stack-common.sh
. "$here/stack-common.sh"

MARKER="$STACK_DIR/.krait-stack"
SYS_PYTHON=/usr/bin/python3.11
PG_USER=postgres
PG_DB=shop
PG_ROLE=shop
PG_PASSWORD=shop-secret
APACHE_USER=www-data
WAIT_SECS="${KRAIT_STACK_WAIT:-60}"

# Each server's port is the port base plus its offset.
OFF_PG=1
OFF_MEMCACHED=2
OFF_APACHE_MAIN=10
OFF_APACHE_SUB=11
OFF_GUNICORN_GTHREAD=20
OFF_GUNICORN_SYNC=21
OFF_GUNICORN_VENV=30
OFF_UVICORN_VENV=31
ALL_OFFSETS="$OFF_PG $OFF_MEMCACHED $OFF_APACHE_MAIN $OFF_APACHE_SUB $OFF_GUNICORN_GTHREAD $OFF_GUNICORN_SYNC $OFF_GUNICORN_VENV $OFF_UVICORN_VENV"

log() { echo "stack: $*" >&2; }
die() { echo "stack: ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# pid_cmdline PID prints its command line with spaces for NULs.
pid_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# read_pid FILE prints the first line of a pid file, or nothing.
read_pid() { [ -s "$1" ] && head -1 "$1" | tr -dc 0-9 || true; }

# running PIDFILE PATTERN: the PID in PIDFILE is alive and its command line
# contains PATTERN (so a reused PID is never taken for ours).
running() {
  local pid
  pid="$(read_pid "$1")"
  pid_alive "$pid" && pid_cmdline "$pid" | grep -q -- "$2"
}

# child_pids PID: PIDs whose parent is PID.
child_pids() {
  local parent="$1" f s st ppid out=""
  for f in /proc/[0-9]*/stat; do
    { read -r s <"$f"; } 2>/dev/null || continue
    read -r st ppid _ <<<"${s##*) }"
    [ "$ppid" = "$parent" ] && { f="${f#/proc/}"; out="$out ${f%/stat}"; }
  done
  echo $out
}

# child_pids_matching PID PATTERN: children of PID whose command line
# starts with PATTERN.
child_pids_matching() {
  local p out=""
  for p in $(child_pids "$1"); do
    case "$(pid_cmdline "$p")" in "$2"*) out="$out $p" ;; esac
  done
  echo $out
}

# signal_ours NAME PID PATTERN [SIGNAL]: signal PID if it is alive and its
# command line still matches PATTERN (a basic regex); prints the PID if so.
signal_ours() {
  local name="$1" pid="$2" pat="$3" sig="${4:-TERM}"
  pid_alive "$pid" || return 0
  if ! pid_cmdline "$pid" | grep -q -- "$pat"; then
    log "$name: PID $pid is not ours any more, left alone"
    return 0
  fi
  kill -s "$sig" "$pid" 2>/dev/null && echo "$pid" || true
}

# wait_gone PID...: wait until every PID has exited; SIGKILL after 20 s.
wait_gone() {
  local i p left
  for i in $(seq 1 200); do
    left=""
    for p in "$@"; do pid_alive "$p" && left="$left $p"; done
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  log "PIDs$left did not stop in 20 s, killing them"
  for p in $left; do kill -s KILL "$p" 2>/dev/null || true; done
  sleep 0.2
}

# spawn PIDFILE LOG CMD...: run CMD in its own session, in the background,
# detached from our terminal and output; records its PID.
spawn() {
  local pidfile="$1" out="$2"
  shift 2
  setsid "$@" </dev/null >>"$out" 2>&1 &
  echo $! >"$pidfile"
}

pg_bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -x "$d/postgres" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/stack-deps.sh)"
  echo "$d"
}

# as_user USER CMD...: run CMD as USER from a directory USER can enter.
as_user() {
  local u="$1"
  shift
  (cd "$STACK_DIR" && runuser -u "$u" -- "$@")
}

# ---------------------------------------------------------------- layout

load_ports() {
  local f="$STACK_DIR/ports"
  if [ -s "$f" ]; then
    PORT_BASE="$(cat "$f")"
  elif [ -n "${KRAIT_STACK_PORT_BASE:-}" ]; then
    PORT_BASE="$KRAIT_STACK_PORT_BASE"
  else
    PORT_BASE=""
  fi
}

choose_ports() {
  load_ports
  if [ -z "$PORT_BASE" ]; then
    local b o busy
    for b in $(seq 18400 100 19900); do
      busy=0
      for o in $ALL_OFFSETS; do port_in_use $((b + o)) && { busy=1; break; }; done
      [ "$busy" = 0 ] && { PORT_BASE="$b"; break; }
    done
    [ -n "$PORT_BASE" ] || die "no free port range found in 18400-19999 (set KRAIT_STACK_PORT_BASE)"
  fi
  echo "$PORT_BASE" >"$STACK_DIR/ports"
}

set_layout() {
  PG_PORT=$((PORT_BASE + OFF_PG))
  MEMCACHED_PORT=$((PORT_BASE + OFF_MEMCACHED))
  APACHE_MAIN_PORT=$((PORT_BASE + OFF_APACHE_MAIN))
  APACHE_SUB_PORT=$((PORT_BASE + OFF_APACHE_SUB))
  GUNICORN_GTHREAD_PORT=$((PORT_BASE + OFF_GUNICORN_GTHREAD))
  GUNICORN_SYNC_PORT=$((PORT_BASE + OFF_GUNICORN_SYNC))
  GUNICORN_VENV_PORT=$((PORT_BASE + OFF_GUNICORN_VENV))
  UVICORN_VENV_PORT=$((PORT_BASE + OFF_UVICORN_VENV))

  PG_DIR="$STACK_DIR/postgres"
  PG_DATA="$PG_DIR/data"
  PG_SOCKET_DIR="$PG_DIR/run"
  PG_LOG="$PG_DIR/postgresql.log"
  MC_DIR="$STACK_DIR/memcached"
  AP_DIR="$STACK_DIR/apache"
  AP_CONF="$AP_DIR/httpd.conf"
  AP_PIDFILE="$AP_DIR/run/apache2.pid"
  GT_DIR="$STACK_DIR/gunicorn-gthread"
  GS_DIR="$STACK_DIR/gunicorn-sync"
  GV_DIR="$STACK_DIR/gunicorn-venv"
  UV_DIR="$STACK_DIR/uvicorn-venv"

  # What every Django process reads (shopsite/settings.py).
  export KRAIT_PG_HOST=127.0.0.1 KRAIT_PG_PORT="$PG_PORT" KRAIT_PG_DB="$PG_DB"
  export KRAIT_PG_USER="$PG_ROLE" KRAIT_PG_PASSWORD="$PG_PASSWORD"
  export KRAIT_MEMCACHED_PORT="$MEMCACHED_PORT"
  export DJANGO_SETTINGS_MODULE=shopsite.settings
  # Keep the work tree clean: no __pycache__ written into testdata/django.
  export PYTHONDONTWRITEBYTECODE=1
  export LANG=C.UTF-8
}

# need_free_port NAME PORT: before starting NAME, nothing may listen on PORT.
need_free_port() {
  if port_in_use "$2"; then
    die "$1: 127.0.0.1:$2 is already in use by another program (scripts/stack.sh down, or KRAIT_STACK_PORT_BASE=... with a fresh KRAIT_STACK_DIR)"
  fi
}

# ---------------------------------------------------------------- postgres

pg_pid() { read_pid "$PG_DATA/postmaster.pid"; }
pg_running() { local p; p="$(pg_pid)"; pid_alive "$p" && pid_cmdline "$p" | grep -q postgres; }

start_postgres() {
  local bin
  bin="$(pg_bindir)"
  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    log "postgres: initdb $PG_DATA"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA" "$PG_SOCKET_DIR"
    chown -R "$PG_USER:" "$PG_DIR"
    as_user "$PG_USER" "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 ||
      { tail -20 "$PG_DIR/initdb.log" >&2; die "postgres: initdb failed"; }
    echo "include_if_exists = 'krait.conf'" >>"$PG_DATA/postgresql.conf"
  fi
  # Rewritten on every start: the ports may differ from the last stack's.
  cat >"$PG_DATA/krait.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCKET_DIR'
max_connections = 100
shared_buffers = 64MB
logging_collector = off
log_destination = 'stderr'
log_statement = 'all'
log_line_prefix = '%m [%p] %q%u@%d app=%a '
lc_messages = 'C'
EOF
  chown "$PG_USER:" "$PG_DATA/krait.conf"
  if pg_running; then
    return 0
  fi
  need_free_port postgres "$PG_PORT"
  log "postgres: starting on 127.0.0.1:$PG_PORT"
  touch "$PG_LOG"
  chown "$PG_USER:" "$PG_LOG"
  as_user "$PG_USER" "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$WAIT_SECS" start >"$PG_DIR/pg_ctl.log" 2>&1 ||
    { tail -20 "$PG_LOG" >&2; die "postgres: failed to start (log: $PG_LOG)"; }
}

pg_admin() {
  as_user "$PG_USER" "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" \
    -U postgres -d postgres -tA "$@"
}

setup_database() {
  if [ "$(pg_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" != 1 ]; then
    pg_admin -c "CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASSWORD'" >/dev/null
  fi
  if [ "$(pg_admin -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
    pg_admin -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE" >/dev/null
  fi
  log "postgres: migrate and load fixture data"
  (cd "$DJANGO_DIR" && KRAIT_APP_NAME=load_shop_data "$SYS_PYTHON" manage.py load_shop_data) \
    >"$PG_DIR/load_shop_data.log" 2>&1 ||
    { tail -20 "$PG_DIR/load_shop_data.log" >&2; die "loading the shop data failed"; }
  log "postgres: $(tail -1 "$PG_DIR/load_shop_data.log")"
}

# ---------------------------------------------------------------- memcached

start_memcached() {
  mkdir -p "$MC_DIR"
  running "$MC_DIR/memcached.pid" memcached && return 0
  need_free_port memcached "$MEMCACHED_PORT"
  log "memcached: starting on 127.0.0.1:$MEMCACHED_PORT"
  local args=(-l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -c 1024)
  [ "$(id -u)" = 0 ] && args+=(-u memcache)
  spawn "$MC_DIR/memcached.pid" "$MC_DIR/memcached.log" /usr/bin/memcached "${args[@]}"
}

memcached_ok() { (exec 3<>"/dev/tcp/127.0.0.1/$MEMCACHED_PORT" && printf 'version\r\n' >&3 && head -c 7 <&3 | grep -q VERSION) 2>/dev/null; }

# ---------------------------------------------------------------- apache

# The directory Apache's www-data processes load the project from: the work
# tree itself when www-data can read it, else a copy in the stack directory.
apache_app_dir() {
  if [ "$(id -u)" != 0 ] || runuser -u "$APACHE_USER" -- test -r "$DJANGO_DIR/shop/views.py" 2>/dev/null; then
    echo "$DJANGO_DIR"
  else
    echo "$AP_DIR/app"
  fi
}

write_apache_conf() {
  local app="$1" user_lines=""
  if [ "$(id -u)" = 0 ]; then
    user_lines="User $APACHE_USER
Group $APACHE_USER"
  fi
  cat >"$AP_CONF" <<EOF
# Written by scripts/stack.sh: krait's test Apache, private to $STACK_DIR.
ServerRoot "$AP_DIR"
ServerName 127.0.0.1
DefaultRuntimeDir "$AP_DIR/run"
PidFile "$AP_PIDFILE"
ErrorLog "$AP_DIR/logs/error.log"
LogLevel warn
$user_lines

LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule wsgi_module /usr/lib/apache2/modules/mod_wsgi.so

StartServers 1
ServerLimit 2
ThreadsPerChild 25
MinSpareThreads 5
MaxSpareThreads 50
MaxRequestWorkers 50
Timeout 600

LogFormat "%h %t \"%r\" %>s %b %Dus pid=%P group=%{mod_wsgi.process_group}e" krait
CustomLog "$AP_DIR/logs/access.log" krait

<Directory />
    Require all denied
</Directory>
<Directory "$app/shopsite">
    <Files wsgi.py>
        Require all granted
    </Files>
</Directory>

# No Python in Apache's own processes: everything runs in the daemons.
WSGIRestrictEmbedded On
WSGISocketPrefix "$AP_DIR/run/wsgi"

# Process group krait-main: Django in the main interpreter (%{GLOBAL}),
# preloaded when the daemon starts. Process title: (wsgi:krait-main)
# request-timeout: a watchdog krait names when a thread stops (long enough
# for any test to hold a request).
WSGIDaemonProcess krait-main processes=1 threads=4 display-name=%{GROUP} \\
    python-path="$app" home="$app" lang=C.UTF-8 locale=C.UTF-8 \\
    shutdown-timeout=5 request-timeout=900
# Process group krait-sub: Django in mod_wsgi's default sub-interpreter
# (application group "127.0.0.1:PORT|"), loaded by the first request.
# Process title: (wsgi:krait-sub)
WSGIDaemonProcess krait-sub processes=1 threads=4 display-name=%{GROUP} \\
    python-path="$app" home="$app" lang=C.UTF-8 locale=C.UTF-8 \\
    shutdown-timeout=5

Listen 127.0.0.1:$APACHE_MAIN_PORT
Listen 127.0.0.1:$APACHE_SUB_PORT

<VirtualHost 127.0.0.1:$APACHE_MAIN_PORT>
    ServerName 127.0.0.1
    WSGIScriptAlias / "$app/shopsite/wsgi.py" process-group=krait-main application-group=%{GLOBAL}
    WSGIProcessGroup krait-main
    WSGIApplicationGroup %{GLOBAL}
</VirtualHost>

<VirtualHost 127.0.0.1:$APACHE_SUB_PORT>
    ServerName 127.0.0.1
    WSGIScriptAlias / "$app/shopsite/wsgi.py"
    WSGIProcessGroup krait-sub
</VirtualHost>
EOF
}

apache_env() {
  env APACHE_RUN_USER="$APACHE_USER" APACHE_RUN_GROUP="$APACHE_USER" \
    APACHE_PID_FILE="$AP_PIDFILE" APACHE_RUN_DIR="$AP_DIR/run" \
    APACHE_LOCK_DIR="$AP_DIR/run" APACHE_LOG_DIR="$AP_DIR/logs" "$@"
}

apache_running() { running "$AP_PIDFILE" apache2; }

start_apache() {
  mkdir -p "$AP_DIR/run" "$AP_DIR/logs"
  chmod 755 "$AP_DIR" "$AP_DIR/run"
  apache_running && return 0
  need_free_port apache "$APACHE_MAIN_PORT"
  need_free_port apache "$APACHE_SUB_PORT"
  local app
  app="$(apache_app_dir)"
  if [ "$app" != "$DJANGO_DIR" ]; then
    log "apache: $APACHE_USER cannot read $DJANGO_DIR; serving a copy from $app"
    rm -rf "$app"
    cp -a "$DJANGO_DIR" "$app"
    chmod -R a+rX "$app"
  fi
  echo "$app" >"$AP_DIR/app-dir"
  write_apache_conf "$app"
  apache_env /usr/sbin/apache2 -f "$AP_CONF" -t >"$AP_DIR/configtest.log" 2>&1 ||
    { cat "$AP_DIR/configtest.log" >&2; die "apache: configuration test failed ($AP_CONF)"; }
  log "apache: starting on 127.0.0.1:$APACHE_MAIN_PORT (krait-main) and :$APACHE_SUB_PORT (krait-sub)"
  apache_env /usr/sbin/apache2 -f "$AP_CONF" -k start >"$AP_DIR/logs/start.log" 2>&1 ||
    { cat "$AP_DIR/logs/start.log" >&2; die "apache: failed to start (log: $AP_DIR/logs/error.log)"; }
}

# ---------------------------------------------------------------- gunicorn

# start_gunicorn DIR NAME PORT PYTHON ARGS...
start_gunicorn() {
  local dir="$1" name="$2" port="$3" py="$4"
  shift 4
  mkdir -p "$dir"
  running "$dir/gunicorn.pid" gunicorn && return 0
  need_free_port "gunicorn $name" "$port"
  log "gunicorn $name: starting on 127.0.0.1:$port ($py)"
  rm -f "$dir/gunicorn.pid"
  (
    cd "$DJANGO_DIR"
    export KRAIT_APP_NAME="$name" PYTHONPATH="$DJANGO_DIR"
    spawn "$dir/launcher.pid" "$dir/stdout.log" "$py" -m gunicorn \
      --bind "127.0.0.1:$port" --name "$name" --chdir "$DJANGO_DIR" \
      --pid "$dir/gunicorn.pid" --access-logfile "$dir/access.log" \
      --error-logfile "$dir/error.log" --timeout 700 --graceful-timeout 5 \
      "$@" shopsite.wsgi:application
  )
}

start_gunicorns() {
  start_gunicorn "$GT_DIR" krait-gthread "$GUNICORN_GTHREAD_PORT" "$SYS_PYTHON" \
    --worker-class gthread --workers 1 --threads 4
  start_gunicorn "$GS_DIR" krait-sync "$GUNICORN_SYNC_PORT" "$SYS_PYTHON" \
    --worker-class sync --workers 2
  start_gunicorn "$GV_DIR" krait-venv "$GUNICORN_VENV_PORT" "$VENV_DIR/bin/python" \
    --worker-class gthread --workers 1 --threads 4
}

# ---------------------------------------------------------------- uvicorn

# start_uvicorn: Django's ASGI application in the venv, one process. Its
# async view /aslow/ calls the venv's gunicorn (KRAIT_UPSTREAM).
start_uvicorn() {
  mkdir -p "$UV_DIR"
  running "$UV_DIR/uvicorn.pid" uvicorn && return 0
  need_free_port "uvicorn krait-asgi" "$UVICORN_VENV_PORT"
  log "uvicorn krait-asgi: starting on 127.0.0.1:$UVICORN_VENV_PORT ($VENV_DIR/bin/python)"
  (
    cd "$DJANGO_DIR"
    export KRAIT_APP_NAME=krait-asgi PYTHONPATH="$DJANGO_DIR" KRAIT_UPSTREAM="127.0.0.1:$GUNICORN_VENV_PORT"
    spawn "$UV_DIR/uvicorn.pid" "$UV_DIR/uvicorn.log" "$VENV_DIR/bin/python" -m uvicorn \
      --host 127.0.0.1 --port "$UVICORN_VENV_PORT" --no-access-log shopsite.asgi:application
  )
}

# ---------------------------------------------------------------- checks

health_ok() { [ "$(curl -s --max-time 5 "http://127.0.0.1:$1/health/" 2>/dev/null)" = ok ]; }

# wait_health NAME PORT LOGFILE [PIDFILE PATTERN]: wait for /health/; give
# up at once if the server's process (PIDFILE) is gone.
wait_health() {
  local name="$1" port="$2" logf="$3" pidfile="${4:-}" pat="${5:-}" i why="did not answer /health/ within ${WAIT_SECS}s"
  for i in $(seq 1 $((WAIT_SECS * 4))); do
    health_ok "$port" && return 0
    if [ -n "$pidfile" ] && ! running "$pidfile" "$pat"; then
      why="exited before it answered /health/"
      break
    fi
    sleep 0.25
  done
  echo "stack: ERROR: $name on 127.0.0.1:$port $why; last lines of $logf:" >&2
  tail -12 "$logf" >&2 2>/dev/null || true
  return 1
}

wait_all() {
  local i failed=0
  for i in $(seq 1 $((WAIT_SECS * 4))); do memcached_ok && break; sleep 0.25; done
  memcached_ok || { tail -20 "$MC_DIR/memcached.log" >&2; log "ERROR: memcached on 127.0.0.1:$MEMCACHED_PORT does not answer"; failed=1; }
  wait_health "apache krait-main" "$APACHE_MAIN_PORT" "$AP_DIR/logs/error.log" "$AP_PIDFILE" apache2 || failed=1
  wait_health "apache krait-sub" "$APACHE_SUB_PORT" "$AP_DIR/logs/error.log" "$AP_PIDFILE" apache2 || failed=1
  wait_health "gunicorn krait-gthread" "$GUNICORN_GTHREAD_PORT" "$GT_DIR/error.log" "$GT_DIR/launcher.pid" gunicorn || failed=1
  wait_health "gunicorn krait-sync" "$GUNICORN_SYNC_PORT" "$GS_DIR/error.log" "$GS_DIR/launcher.pid" gunicorn || failed=1
  wait_health "gunicorn krait-venv" "$GUNICORN_VENV_PORT" "$GV_DIR/error.log" "$GV_DIR/launcher.pid" gunicorn || failed=1
  wait_health "uvicorn krait-asgi" "$UVICORN_VENV_PORT" "$UV_DIR/uvicorn.log" "$UV_DIR/uvicorn.pid" uvicorn || failed=1
  return "$failed"
}

# ---------------------------------------------------------------- commands

require_stack() {
  [ -f "$MARKER" ] || die "no stack in $STACK_DIR (run scripts/stack.sh up)"
  load_ports
  [ -n "$PORT_BASE" ] || die "$STACK_DIR/ports is missing"
  set_layout
}

cmd_up() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "run as root (PostgreSQL runs as $PG_USER, Apache as $APACHE_USER)"
  if [ -e "$STACK_DIR" ] && [ ! -f "$MARKER" ]; then
    die "$STACK_DIR exists but is not a krait stack; remove it or set KRAIT_STACK_DIR"
  fi
  "$here/stack-deps.sh"
  mkdir -p "$STACK_DIR"
  chmod 755 "$STACK_DIR"
  touch "$MARKER"
  runuser -u "$PG_USER" -- test -x "$STACK_DIR" 2>/dev/null ||
    die "$PG_USER cannot enter $STACK_DIR: choose a KRAIT_STACK_DIR whose parents are world-searchable"
  choose_ports
  set_layout
  start_postgres
  setup_database
  start_memcached
  start_apache
  start_gunicorns
  start_uvicorn
  if ! wait_all; then
    die "the stack is not healthy (see above; scripts/stack.sh status, scripts/stack.sh down)"
  fi
  log "up in $((SECONDS - t0)) s: $STACK_DIR (scripts/stack.sh env for ports and PIDs)"
}

# gunicorn_pids DIR: master PID and worker PIDs
gunicorn_master() { running "$1/gunicorn.pid" gunicorn && read_pid "$1/gunicorn.pid" || true; }
gunicorn_workers() { local m; m="$(gunicorn_master "$1")"; [ -n "$m" ] && child_pids "$m" || true; }

apache_pid() { apache_running && read_pid "$AP_PIDFILE" || true; }
wsgi_pids() { local p; p="$(apache_pid)"; [ -n "$p" ] && child_pids_matching "$p" "(wsgi:$1)" || true; }
uvicorn_pid() { running "$UV_DIR/uvicorn.pid" uvicorn && read_pid "$UV_DIR/uvicorn.pid" || true; }
memcached_pid() { running "$MC_DIR/memcached.pid" memcached && read_pid "$MC_DIR/memcached.pid" || true; }

cmd_env() {
  require_stack
  local venv_py
  venv_py="$(readlink -f "$VENV_DIR/bin/python" 2>/dev/null || true)"
  cat <<EOF
export KRAIT_STACK_DIR='$STACK_DIR'
export KRAIT_DJANGO_DIR='$DJANGO_DIR'
export KRAIT_STACK_PORT_BASE=$PORT_BASE
export KRAIT_PG_HOST=127.0.0.1
export KRAIT_PG_PORT=$PG_PORT
export KRAIT_PG_DB='$PG_DB'
export KRAIT_PG_USER='$PG_ROLE'
export KRAIT_PG_PASSWORD='$PG_PASSWORD'
export KRAIT_PG_PID=$(pg_pid)
export KRAIT_PG_DATA='$PG_DATA'
export KRAIT_PG_SOCKET_DIR='$PG_SOCKET_DIR'
export KRAIT_PG_LOG='$PG_LOG'
export KRAIT_MEMCACHED_PORT=$MEMCACHED_PORT
export KRAIT_MEMCACHED_PID=$(memcached_pid)
export KRAIT_MEMCACHED_LOG='$MC_DIR/memcached.log'
export KRAIT_APACHE_CONF='$AP_CONF'
export KRAIT_APACHE_APP_DIR='$(cat "$AP_DIR/app-dir" 2>/dev/null || echo "$DJANGO_DIR")'
export KRAIT_APACHE_PID=$(apache_pid)
export KRAIT_APACHE_ERROR_LOG='$AP_DIR/logs/error.log'
export KRAIT_APACHE_ACCESS_LOG='$AP_DIR/logs/access.log'
export KRAIT_APACHE_MAIN_PORT=$APACHE_MAIN_PORT
export KRAIT_APACHE_MAIN_URL='http://127.0.0.1:$APACHE_MAIN_PORT'
export KRAIT_APACHE_MAIN_GROUP=krait-main
export KRAIT_APACHE_MAIN_PIDS='$(wsgi_pids krait-main)'
export KRAIT_APACHE_SUB_PORT=$APACHE_SUB_PORT
export KRAIT_APACHE_SUB_URL='http://127.0.0.1:$APACHE_SUB_PORT'
export KRAIT_APACHE_SUB_GROUP=krait-sub
export KRAIT_APACHE_SUB_PIDS='$(wsgi_pids krait-sub)'
export KRAIT_GUNICORN_GTHREAD_PORT=$GUNICORN_GTHREAD_PORT
export KRAIT_GUNICORN_GTHREAD_URL='http://127.0.0.1:$GUNICORN_GTHREAD_PORT'
export KRAIT_GUNICORN_GTHREAD_PID=$(gunicorn_master "$GT_DIR")
export KRAIT_GUNICORN_GTHREAD_WORKER_PIDS='$(gunicorn_workers "$GT_DIR")'
export KRAIT_GUNICORN_GTHREAD_LOG='$GT_DIR/error.log'
export KRAIT_GUNICORN_GTHREAD_PYTHON='$SYS_PYTHON'
export KRAIT_GUNICORN_SYNC_PORT=$GUNICORN_SYNC_PORT
export KRAIT_GUNICORN_SYNC_URL='http://127.0.0.1:$GUNICORN_SYNC_PORT'
export KRAIT_GUNICORN_SYNC_PID=$(gunicorn_master "$GS_DIR")
export KRAIT_GUNICORN_SYNC_WORKER_PIDS='$(gunicorn_workers "$GS_DIR")'
export KRAIT_GUNICORN_SYNC_LOG='$GS_DIR/error.log'
export KRAIT_GUNICORN_SYNC_PYTHON='$SYS_PYTHON'
export KRAIT_GUNICORN_VENV_PORT=$GUNICORN_VENV_PORT
export KRAIT_GUNICORN_VENV_URL='http://127.0.0.1:$GUNICORN_VENV_PORT'
export KRAIT_GUNICORN_VENV_PID=$(gunicorn_master "$GV_DIR")
export KRAIT_GUNICORN_VENV_WORKER_PIDS='$(gunicorn_workers "$GV_DIR")'
export KRAIT_GUNICORN_VENV_LOG='$GV_DIR/error.log'
export KRAIT_GUNICORN_VENV_PYTHON='$venv_py'
export KRAIT_VENV_DIR='$VENV_DIR'
export KRAIT_UVICORN_PORT=$UVICORN_VENV_PORT
export KRAIT_UVICORN_URL='http://127.0.0.1:$UVICORN_VENV_PORT'
export KRAIT_UVICORN_PID=$(uvicorn_pid)
export KRAIT_UVICORN_LOG='$UV_DIR/uvicorn.log'
export KRAIT_SERVERS_VENV_DIR='$SERVERS_VENV_DIR'
EOF
}

cmd_status() {
  if [ ! -f "$MARKER" ]; then
    echo "stack: not up ($STACK_DIR)"
    return 3
  fi
  require_stack
  local bad=0
  line() { printf '%-24s %-17s %-8s %-22s %s\n' "$@"; }
  line SERVER ADDRESS STATE PIDS DETAIL
  local p st
  p="$(pg_pid)"; st=down; pg_running && st=up || bad=1
  line postgres "127.0.0.1:$PG_PORT" "$st" "$p" "statement log $PG_LOG"
  p="$(memcached_pid)"; st=down; [ -n "$p" ] && memcached_ok && st=up || bad=1
  line memcached "127.0.0.1:$MEMCACHED_PORT" "$st" "$p" ""
  local ap
  ap="$(apache_pid)"
  line apache "-" "$([ -n "$ap" ] && echo up || echo down)" "$ap" "parent; $AP_CONF"
  [ -n "$ap" ] || bad=1
  for g in main sub; do
    local port=$APACHE_MAIN_PORT
    [ "$g" = sub ] && port=$APACHE_SUB_PORT
    st=down; health_ok "$port" && st=up || bad=1
    line "apache krait-$g" "127.0.0.1:$port" "$st" "$(wsgi_pids "krait-$g")" "mod_wsgi daemon (wsgi:krait-$g)"
  done
  for s in "gthread:$GT_DIR:$GUNICORN_GTHREAD_PORT:$SYS_PYTHON" "sync:$GS_DIR:$GUNICORN_SYNC_PORT:$SYS_PYTHON" \
           "venv:$GV_DIR:$GUNICORN_VENV_PORT:$VENV_DIR/bin/python"; do
    IFS=: read -r name dir port py <<<"$s"
    local m
    m="$(gunicorn_master "$dir")"
    st=down; health_ok "$port" && st=up || bad=1
    line "gunicorn krait-$name" "127.0.0.1:$port" "$st" "$m" "workers: $(gunicorn_workers "$dir"); $py"
  done
  st=down; health_ok "$UVICORN_VENV_PORT" && st=up || bad=1
  line "uvicorn krait-asgi" "127.0.0.1:$UVICORN_VENV_PORT" "$st" "$(uvicorn_pid)" "ASGI; $VENV_DIR/bin/python"
  return "$bad"
}

cmd_down() {
  if [ ! -e "$STACK_DIR" ]; then
    log "no stack in $STACK_DIR"
    return 0
  fi
  [ -f "$MARKER" ] || die "$STACK_DIR is not a krait stack (no $MARKER); not touching it"
  load_ports
  if [ -n "$PORT_BASE" ]; then
    set_layout
    local d ap daemons p pids=""
    # Everything but PostgreSQL at once, then wait: Apache takes ~3 s.
    for d in "$GT_DIR" "$GS_DIR" "$GV_DIR"; do
      pids="$pids $(signal_ours gunicorn "$(read_pid "$d/gunicorn.pid")" gunicorn)"
    done
    ap="$(read_pid "$AP_PIDFILE")"
    if pid_alive "$ap"; then
      daemons="$(child_pids "$ap")"
      pids="$pids $(signal_ours apache "$ap" apache2)"
    fi
    pids="$pids $(signal_ours uvicorn "$(read_pid "$UV_DIR/uvicorn.pid")" uvicorn)"
    pids="$pids $(signal_ours memcached "$(read_pid "$MC_DIR/memcached.pid")" memcached)"
    wait_gone $pids
    # Apache's children (worker processes, mod_wsgi daemons) go with it.
    pids=""
    for p in ${daemons:-}; do pids="$pids $(signal_ours "apache child" "$p" 'apache2\|(wsgi:' KILL)"; done
    wait_gone $pids
    if pg_running; then
      as_user "$PG_USER" "$(pg_bindir)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >/dev/null 2>&1 ||
        wait_gone "$(signal_ours postgres "$(pg_pid)" postgres QUIT)"
    fi
  fi
  rm -rf "$STACK_DIR"
  log "down: stopped everything, removed $STACK_DIR"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
