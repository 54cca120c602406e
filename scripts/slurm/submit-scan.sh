#!/usr/bin/env bash
# Render a set, submit the sharded extraction as an array, and the merge+analysis as a dependent job.
#
#   scripts/slurm/submit-scan.sh qwen2.5-vl-7b wild-360 runs/q7 8
set -euo pipefail
MODEL=${1:?model}; SET=${2:?stimulus set, e.g. wild-360}; RUN=${3:?run folder}; SHARDS=${4:-8}
HUESCAN=${HUESCAN:-huescan}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p logs
"$HUESCAN" stimuli render "$SET" --out "$RUN/stimuli/$SET"
jid=$(sbatch --parsable --array=0-$((SHARDS - 1)) "$here/scan-array.sbatch" "$MODEL" "$RUN/stimuli/$SET" "$RUN/activations/$SET")
sbatch --dependency=afterok:"$jid" "$here/merge-analyze.sbatch" "$RUN/activations/$SET" "$RUN/analysis"
echo "submitted extraction array $jid ($SHARDS shards) and its merge+analysis"
