#!/usr/bin/env bash
# kill -9 campaign: every command is killed at random points of its run until KILLS kills have landed while it
# was running (at most 3 x KILLS attempts), re-run in the same folder each time; every few kills the command is
# run to the end and the folder is compared, byte for byte (hidden files included), with the tree of an
# uninterrupted run. Prints one line per command and exits non-zero if any tree differed.
#
#   scripts/kill_campaign.sh [KILLS_PER_COMMAND (20)] [COMMANDS (all)]
#   HUESCAN=target/release/huescan WORK=/tmp/campaign MAX_SECONDS=1800 scripts/kill_campaign.sh 20 "extract merge"
#
# Commands: render extract merge analyze steer report scan demo (the autoencoder and simple-60, offline).
# Kill times are drawn with a fixed seed (SEED, default 15), uniformly over the uninterrupted run's duration.
set -euo pipefail

KILLS=${1:-20}
COMMANDS=${2:-"render extract merge analyze steer report scan demo"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HUESCAN=$(realpath "${HUESCAN:-$ROOT/target/debug/huescan}")
WORK=${WORK:-$(mktemp -d -t huescan-campaign-XXXX)}
MAX_SECONDS=${MAX_SECONDS:-3600}
# A comparison after every ROUND kills; each round starts from the same inputs.
ROUND=${ROUND:-4}
RANDOM=${SEED:-15}
START=$SECONDS
[ -x "$HUESCAN" ] || { echo "no huescan binary at $HUESCAN; cargo build first" >&2; exit 2; }
mkdir -p "$WORK"

AE=(--model colour-autoencoder --ae-weights ae.safetensors --ae-epochs 30)
SHARED="$WORK/shared"

# With EXEC set the subshell becomes huescan itself, so `$!` is huescan's pid and kill -9 hits it directly.
h() { if [ -n "${EXEC:-}" ]; then exec "$HUESCAN" -q "$@"; else "$HUESCAN" -q "$@"; fi; }

# Inputs every command's folder is made from, built once.
prepare_shared() {
    [ -f "$SHARED/done" ] && return
    rm -rf "$SHARED" && mkdir -p "$SHARED" && cd "$SHARED"
    h stimuli render simple-60 --out stim
    h extract "${AE[@]}" --stimuli stim --out acts
    h extract "${AE[@]}" --stimuli stim --out sharded --shard 0/2
    h extract "${AE[@]}" --stimuli stim --out sharded --shard 1/2
    h analyze acts --out analysis --permutations 20 --bootstrap 50
    touch done
}

# setup_<cmd> DIR: the folder's state before the command; cmd_<cmd>: the command, run inside it.
setup_render() { :; }
cmd_render() { h stimuli render simple-60 --out stim; }
setup_extract() { cp -a "$SHARED/stim" "$SHARED/ae.safetensors" "$1/"; }
cmd_extract() { h extract "${AE[@]}" --stimuli stim --out acts; }
setup_merge() { cp -a "$SHARED/sharded" "$1/"; rm -f "$1/sharded/manifest.json" "$1"/sharded/layer_*.safetensors; }
cmd_merge() { h merge sharded; }
setup_analyze() { cp -a "$SHARED/acts" "$1/"; }
cmd_analyze() { h analyze acts --out analysis --permutations 20 --bootstrap 50; }
setup_steer() { cp -a "$SHARED/acts" "$SHARED/stim" "$SHARED/ae.safetensors" "$1/"; }
cmd_steer() { h steer "${AE[@]}" --acts acts --stimuli stim --layer 2 --out steer; }
setup_report() { mkdir -p "$1/run" && cp -a "$SHARED/analysis" "$1/run/"; }
cmd_report() { h report run; }
setup_scan() { :; }
cmd_scan() { h scan colour-autoencoder --sets simple-60 --out run --permutations 20; }
setup_demo() { :; }
cmd_demo() { h demo --out run --sets simple-60 --permutations 20; }

# Every path (directories too) with the SHA-256 of its content.
fingerprint() {
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do
        if [ -d "$p" ]; then echo "dir $p"; else echo "$(sha256sum < "$p" | cut -c1-64) $p"; fi
    done)
}

fresh() { rm -rf "$1" && mkdir -p "$1" && "setup_$2" "$1"; }

failed=0
prepare_shared
for c in $COMMANDS; do
    dir="$WORK/$c"
    fresh "$dir" "$c"
    t0=$(date +%s%N)
    (cd "$dir" && "cmd_$c") > /dev/null 2> "$WORK/$c.ref.log"
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    fingerprint "$dir" > "$WORK/$c.ref"
    kills=0 interrupted=0 same=0 rounds=0
    while [ $interrupted -lt "$KILLS" ] && [ $kills -lt $((3 * KILLS)) ] && [ $((SECONDS - START)) -lt "$MAX_SECONDS" ]; do
        fresh "$dir" "$c"
        for _ in $(seq "$ROUND"); do
            [ $interrupted -ge "$KILLS" ] && break
            delay_ms=$(( RANDOM * ms / 32768 ))
            (cd "$dir" && EXEC=1 "cmd_$c" > /dev/null 2>&1) &
            pid=$!
            sleep "$(awk "BEGIN { print $delay_ms / 1000 }")"
            if kill -0 $pid 2>/dev/null; then interrupted=$((interrupted + 1)); fi
            kill -9 $pid 2>/dev/null || true
            wait $pid 2>/dev/null || true
            kills=$((kills + 1))
        done
        (cd "$dir" && "cmd_$c") > /dev/null 2> "$WORK/$c.last.log" || { echo "$c: re-run failed, see $WORK/$c.last.log"; failed=1; }
        rounds=$((rounds + 1))
        if fingerprint "$dir" | cmp -s - "$WORK/$c.ref"; then
            same=$((same + 1))
        else
            fingerprint "$dir" | diff "$WORK/$c.ref" - > "$WORK/$c.diff.$rounds" || true
            failed=1
        fi
    done
    echo "$c: $interrupted kills while running ($kills attempts; uninterrupted run ${ms} ms), $same of $rounds re-runs byte-identical"
done
exit $failed
