#!/usr/bin/env bash
# Render RUN_DIR/report.html in headless Chromium to a PNG, to check it displays offline.
# usage: scripts/render_report.sh RUN_DIR [OUT.png] [HEIGHT]
# Writes report.html first when the run has none (winnow inspect RUN_DIR --report).
# Needs Chromium: apt-get install -y chromium (Debian) or set CHROMIUM=/path/to/chrome.
set -euo pipefail
run_dir=${1:?usage: $0 RUN_DIR [OUT.png] [HEIGHT]}
out=${2:-$run_dir/report.png}
height=${3:-6000}
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$chromium" ] || { echo "no chromium found: apt-get install -y chromium, or set CHROMIUM" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
winnow=${WINNOW:-$here/.venv/bin/winnow}
[ -f "$run_dir/report.html" ] || "$winnow" inspect "$run_dir" --report >/dev/null
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$chromium" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --window-size="1200,$height" --screenshot="$out" "file://$(cd "$run_dir" && pwd)/report.html" 2>/dev/null
echo "$out"
