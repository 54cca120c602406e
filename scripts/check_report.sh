#!/usr/bin/env bash
# Opens a huescan report in headless Chromium (Debian's `chromium` package), takes a screenshot and checks that
# every figure on the page loaded (the page marks <body data-figures-loaded="k/n"> once loaded), that every
# interactive 3-D view drew (<body data-views3d="k/k">, k >= 1 unless --no-views) and that the page logged
# nothing to the console (a script error shows there).
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
# Headless Chromium occasionally never exits after a screenshot on a loaded machine: bound each run, retry once.
browse() { timeout 120 "$browser" "$@" || timeout 120 "$browser" "$@"; }
browse "${flags[@]}" --window-size=1400,2400 --screenshot="$shot" "file://$page" >/dev/null 2>&1
# --enable-logging=stderr --v=0 makes Chromium print every console message (errors included) as a
# `CONSOLE(line)` log line.
browse "${flags[@]}" --enable-logging=stderr --v=0 --dump-dom "file://$page" 2>"$profile/console.log" > "$profile/dom.html"
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
views=$(grep -o 'data-views3d="[0-9]*/[0-9]*"' "$profile/dom.html" | head -1 | sed 's/.*="\(.*\)"/\1/')
vok=${views%/*}; vtotal=${views#*/}
if [ -z "$views" ] || [ "$vtotal" -eq 0 ] || [ "$vok" -ne "$vtotal" ]; then
    echo "error: ${vok:-0} of ${vtotal:-0} interactive 3-D views drew in $page" >&2
    exit 1
fi
drawn=$(grep -o '<canvas[^>]*data-rendered="[1-9]' "$profile/dom.html" | wc -l)
if [ "$drawn" -lt "$vtotal" ]; then
    echo "error: only $drawn of $vtotal 3-D views drew any point" >&2
    exit 1
fi
if grep -q 'CONSOLE' "$profile/console.log"; then
    echo "error: the page wrote to the browser console:" >&2
    grep 'CONSOLE' "$profile/console.log" >&2
    exit 1
fi
# A blank page still makes a PNG; a rendered report with figures is far larger than a few KB.
size=$(stat -c %s "$shot" 2>/dev/null || echo 0)
if [ "$size" -lt 20000 ]; then
    echo "error: the screenshot $shot is missing or blank ($size bytes)" >&2
    exit 1
fi
echo "report renders: $ok/$total figures loaded, $vok/$vtotal 3-D views drawn, no console messages; screenshot $shot"
