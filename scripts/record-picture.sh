#!/usr/bin/env bash
# Remakes docs/record-flamegraph.png, the README's picture of `krait record`:
# two gunicorn sync workers (Debian's python3 and gunicorn, as
# scripts/stack-deps.sh installs them) serving testdata/fixtures/wsgi_app.py
# as /srv/shop/shop.py (a neutral path for the picture; removed after)
# under a few looping clients, recorded by view for 3 s, the SVG rendered
# by headless Chromium.
#
#   scripts/record-picture.sh [OUT.png]
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-docs/record-flamegraph.png}"
py=/usr/bin/python3
"$py" -c 'import gunicorn' 2>/dev/null || { echo "record-picture: no gunicorn for $py (run scripts/stack-deps.sh)" >&2; exit 1; }
[ ! -e /srv/shop ] || { echo "record-picture: /srv/shop exists; not touching it" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser) || { echo "record-picture: no chromium" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work" /srv/shop
}
trap cleanup EXIT

mkdir -p /srv/shop
cp testdata/fixtures/wsgi_app.py /srv/shop/shop.py
CGO_ENABLED=0 go build -o "$work/krait" ./cmd/krait
port=$(( 20000 + RANDOM % 20000 ))
"$py" -m gunicorn --chdir /srv/shop -w 2 -b "127.0.0.1:$port" shop:application \
  >"$work/gunicorn.log" 2>&1 &
master=$!
pids+=("$master")
for _ in $(seq 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/fast" && break
  sleep 0.1
done
for _ in 1 2 3 4; do
  ( while :; do curl -s -o /dev/null "http://127.0.0.1:$port/slow"; curl -s -o /dev/null "http://127.0.0.1:$port/fast"; done ) &
  pids+=("$!")
done
sleep 1
"$work/krait" record --pid "$master" --subprocesses --by view -d 3 -o "$work/record.svg"
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,520 \
  --screenshot="$work/shot.png" "file://$work/record.svg" >/dev/null 2>&1
cp "$work/shot.png" "$out"
echo "record-picture: wrote $out"
