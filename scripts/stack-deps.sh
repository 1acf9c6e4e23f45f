#!/usr/bin/env bash
# Installs what scripts/stack.sh needs: Debian packages (PostgreSQL, memcached, Redis,
# Apache + mod_wsgi, Django 3.2 and friends for /usr/bin/python3.11, gunicorn)
# and a pyenv-based venv with Django 5.2. Idempotent and quiet: when everything
# is present it only checks and exits.
#
#   scripts/stack-deps.sh          # apt packages + venv
#   scripts/stack-deps.sh --venv   # only the venv
#
# Environment:
#   PYENV_ROOT               pyenv's root (default $HOME/.pyenv)
#   KRAIT_STACK_VENV_PYTHON  pyenv version (prefix) for the venv (default 3.12)
#   KRAIT_STACK_CACHE        where the venv lives (default
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/krait-stack)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=stack-common.sh
. "$here/stack-common.sh"

want_apt=1
case "${1:-}" in
  "") ;;
  --venv) want_apt=0 ;;
  *) echo "usage: $0 [--venv]" >&2; exit 2 ;;
esac

apt_pkgs=(postgresql memcached redis-server apache2 libapache2-mod-wsgi-py3 python3.11
  python3-django python3-psycopg2 python3-pymemcache python3-pylibmc python3-django-redis python3-setproctitle
  gunicorn curl)

install_apt() {
  local missing=() p
  for p in "${apt_pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "stack-deps: need root to install: ${missing[*]}" >&2
    return 1
  fi
  echo "stack-deps: apt-get install ${missing[*]}" >&2
  # Packages must not start their system-wide services (the stack runs its
  # own): a policy-rc.d that denies every start, unless one is there already.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  local rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
  } >/tmp/krait-stack-deps-apt.log 2>&1 || rc=$?
  [ "$made_policy" = 1 ] && rm -f "$policy"
  if [ "$rc" != 0 ]; then
    echo "stack-deps: apt-get failed (rc=$rc); last lines of /tmp/krait-stack-deps-apt.log:" >&2
    tail -20 /tmp/krait-stack-deps-apt.log >&2
    return 1
  fi
}

# build_venv DIR REQUIREMENT...: a venv at DIR from the pyenv base Python
# with those requirements, rebuilt only when they change.
build_venv() {
  local dir="$1" py stamp want
  shift
  py="$(venv_base_python)" || return 1
  want="$py $*"
  stamp="$dir/.krait-stack-stamp"
  mkdir -p "$(dirname "$dir")"
  # One builder at a time (tests of several checkouts may start at once).
  exec 8>"$dir.lock"
  flock 8
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exec 8>&-
    return 0
  fi
  echo "stack-deps: building $dir ($py; $*)" >&2
  rm -rf "$dir"
  local log="$dir.build.log"
  if ! {
    "$py" -m venv "$dir" &&
      "$dir/bin/python" -m pip install -q --disable-pip-version-check \
        --no-input "$@"
  } >"$log" 2>&1; then
    echo "stack-deps: building the venv failed; last lines of $log:" >&2
    tail -20 "$log" >&2
    rm -rf "$dir"
    exec 8>&-
    return 1
  fi
  echo "$want" >"$stamp"
  exec 8>&-
}

install_venv() {
  build_venv "$VENV_DIR" "${VENV_REQUIREMENTS[@]}"
}

[ "$want_apt" = 1 ] && install_apt
install_venv
build_venv "$SERVERS_VENV_DIR" "${SERVERS_VENV_REQUIREMENTS[@]}"
