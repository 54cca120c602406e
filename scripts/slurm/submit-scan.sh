#!/usr/bin/env bash
# Render a set, submit the sharded extraction as an array, and the merge+analysis as a dependent job.
#
#   scripts/slurm/submit-scan.sh qwen2.5-vl-7b wild-360 runs/q7 8
#
# SBATCH_ARGS adds sbatch options to both jobs (e.g. a partition or account, or, on a CPU-only test cluster,
# `--gres=none --mem=4G --cpus-per-task=1` with DEVICE=cpu). Prints the two job ids.
set -euo pipefail
MODEL=${1:?model}; SET=${2:?stimulus set, e.g. wild-360}; RUN=${3:?run folder}; SHARDS=${4:-8}
HUESCAN=${HUESCAN:-huescan}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p logs
"$HUESCAN" stimuli render "$SET" --out "$RUN/stimuli/$SET"
# shellcheck disable=SC2086  # SBATCH_ARGS is a list of options
jid=$(sbatch --parsable ${SBATCH_ARGS:-} --array=0-$((SHARDS - 1)) "$here/scan-array.sbatch" "$MODEL" "$RUN/stimuli/$SET" "$RUN/activations/$SET")
# shellcheck disable=SC2086
mid=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency=afterok:"$jid" "$here/merge-analyze.sbatch" "$RUN/activations/$SET" "$RUN/analysis")
echo "submitted extraction array $jid ($SHARDS shards) and its merge+analysis $mid"
