# Shared by scripts/stack.sh and scripts/stack-deps.sh (sourced, not run).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DJANGO_DIR="$REPO_ROOT/testdata/django"
STACK_DIR="${KRAIT_STACK_DIR:-/tmp/krait-stack}"
STACK_CACHE="${KRAIT_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/krait-stack}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
VENV_PY_VERSION="${KRAIT_STACK_VENV_PYTHON:-3.12}"
VENV_REQUIREMENTS=('django>=5.2,<5.3' psycopg2-binary pymemcache gunicorn setproctitle 'uvicorn==0.54.0')
# venv_key names a requirement list: each venv's directory ends with its
# list's, so that checkouts with different lists (branches, worktrees
# sharing one cache) each keep their own venv instead of rebuilding one.
venv_key() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }
VENV_DIR="$STACK_CACHE/venv-py$VENV_PY_VERSION-django5.2-$(venv_key "${VENV_REQUIREMENTS[@]}")"
# A second venv with the other servers Python web sites run under (ASGI
# servers, Celery), whose processes `krait ps` must name (test/django
# TestPsRealServers). Apart from the Django venv so that neither rebuilds
# the other.
SERVERS_VENV_REQUIREMENTS=('uvicorn==0.54.0' 'hypercorn==0.18.0' 'daphne==4.2.3' 'celery==5.7.0' setproctitle)
SERVERS_VENV_DIR="$STACK_CACHE/venv-py$VENV_PY_VERSION-servers-$(venv_key "${SERVERS_VENV_REQUIREMENTS[@]}")"

# venv_base_python prints the pyenv interpreter the venv is built from: the
# newest $PYENV_ROOT/versions/$VENV_PY_VERSION.* (or exactly that version).
venv_base_python() {
  local d best=""
  for d in "$PYENV_ROOT/versions/$VENV_PY_VERSION" "$PYENV_ROOT/versions/$VENV_PY_VERSION".*; do
    [ -x "$d/bin/python" ] && best="$best$d"$'\n'
  done
  best="$(printf '%s' "$best" | sort -V | tail -1)"
  if [ -z "$best" ]; then
    echo "stack: no pyenv Python $VENV_PY_VERSION under $PYENV_ROOT/versions (set PYENV_ROOT or KRAIT_STACK_VENV_PYTHON)" >&2
    return 1
  fi
  echo "$best/bin/python"
}
