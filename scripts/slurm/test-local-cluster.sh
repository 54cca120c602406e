#!/usr/bin/env bash
# End-to-end check of the Slurm scripts on a real (one-node) Slurm: starts the cluster (local-cluster.sh),
# submits a 3-shard extraction array of simple-60 with the colour autoencoder plus the dependent merge+analyze
# job (submit-scan.sh), waits, and checks that the merged store equals a single-process extraction byte for
# byte. Needs root and `apt-get install -y slurm-wlm munge`; .ci/run runs it after `cargo test`.
#
#   cargo build && scripts/slurm/test-local-cluster.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/scripts/slurm"
bin=${HUESCAN:-$root/target/debug/huescan}
work=$(mktemp -d)
eval "$(bash "$here/local-cluster.sh" | grep '^export SLURM_CONF=')"
cd "$work"
export HUESCAN="$bin" DEVICE=cpu EXTRA_ARGS="--ae-epochs 100 --ae-weights $work/ae.safetensors"
SBATCH_ARGS="--gres=none --mem=2G --cpus-per-task=1" bash "$here/submit-scan.sh" colour-autoencoder simple-60 "$work/run" 3
for _ in $(seq 1 300); do
    [ -z "$(squeue -h)" ] && break
    sleep 1
done
[ -f "$work/run/analysis/simple-60/arbitration.csv" ] || { echo "error: the merge+analyze job did not finish; see $work/logs" >&2; exit 1; }
"$bin" extract --quiet --model colour-autoencoder --ae-epochs 100 --ae-weights "$work/ae.safetensors" \
    --stimuli "$work/run/stimuli/simple-60" --out "$work/single"
for f in manifest.json layer_000.safetensors layer_002.safetensors layer_004.safetensors; do
    cmp "$work/run/activations/simple-60/$f" "$work/single/$f"
done
echo "slurm array (3 shards) + dependent merge/analyze ran on a real one-node Slurm; merged store == single run"
rm -rf "$work"
