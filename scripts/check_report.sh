#!/usr/bin/env bash
# Opens a huescan report in headless Chromium (Debian's `chromium` package), takes a screenshot and checks that
# every figure on the page loaded (the page marks <body data-figures-loaded="k/n"> once loaded).
#
#   scripts/check_report.sh runs/demo/report/index.html [screenshot.png]
set -euo pipefail
page=$(realpath "${1:?path to report index.html}")
shot=${2:-$(dirname "$page")/screenshot.png}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "error: chromium not found; install it with: apt-get install -y chromium" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --virtual-time-budget=5000)
"$browser" "${flags[@]}" --window-size=1280,2400 --screenshot="$shot" "file://$page" >/dev/null 2>&1
"$browser" "${flags[@]}" --dump-dom "file://$page" 2>/dev/null > "$profile/dom.html"
loaded=$(grep -o 'data-figures-loaded="[0-9]*/[0-9]*"' "$profile/dom.html" | head -1 | sed 's/.*="\(.*\)"/\1/')
if [ -z "$loaded" ]; then
    echo "error: the page did not finish loading in headless Chromium (no data-figures-loaded mark)" >&2
    exit 1
fi
ok=${loaded%/*}; total=${loaded#*/}
if [ "$total" -eq 0 ] || [ "$ok" -ne "$total" ]; then
    echo "error: $ok of $total figures loaded in $page" >&2
    exit 1
fi
if [ ! -s "$shot" ]; then
    echo "error: no screenshot was written" >&2
    exit 1
fi
echo "report renders: $ok/$total figures loaded; screenshot $shot"
