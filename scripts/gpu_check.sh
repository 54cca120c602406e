#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, python3 with torch and transformers, and no Rust toolchain: the model parity
# tests on CUDA (f32, bf16 and f16 against the committed transformers references) and the extraction job
# benchmark against transformers-sdpa on the same GPU. About 5 minutes on an H200; results in RESULTS_DIR.
#
#     scripts/build_cuda_binary.sh            # anywhere, once: target/cuda-release/bundle (git-ignored)
#     scripts/gpu_check.sh [RESULTS_DIR]      # on the GPU machine; RESULTS_DIR defaults to $OUT, else
#                                             # target/gpu-check
#
# With the device tool: run `scripts/gpu_check.sh` with carry ["target/cuda-release/bundle"]; what it writes
# under $OUT comes back (summary.txt, parity.log, gpu_job.json, gpu_job.md, gpu.txt).
# GPU_CHECK_SKIP_BENCH=1 runs the parity tests only.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bundle=${HUESCAN_CUDA_BUNDLE:-target/cuda-release/bundle}
results=${1:-${OUT:-target/gpu-check}}
fail() {
    echo "gpu_check.sh: $*" >&2
    exit 1
}
if ! nvidia-smi -L >/dev/null 2>&1; then
    fail "no NVIDIA GPU on this machine (nvidia-smi lists none); run this on a GPU machine, see BENCHMARKS.md"
fi
# build_cuda_binary.sh gzips the binaries to fit the device tool's 64 MiB.
for b in huescan it; do
    if [ ! -x "$bundle/$b" ] && [ -f "$bundle/$b.gz" ]; then
        gzip -dc "$bundle/$b.gz" >"$bundle/$b" && chmod +x "$bundle/$b"
    fi
done
[ -x "$bundle/huescan" ] && [ -x "$bundle/it" ] ||
    fail "no CUDA build at $bundle; run scripts/build_cuda_binary.sh (any machine) and bring that folder along"
python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    fail "python3 has no torch that sees the GPU; the benchmark's transformers side needs one"
mkdir -p "$results"
results=$(cd "$results" && pwd)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$results/gpu.txt" 2>&1

# cudarc loads libcublas, libcublasLt, libcurand and libnvrtc at run time: take those of torch's pip packages.
libs=$(python3 - <<'PY'
import glob, os, site
dirs = {os.path.dirname(f) for sp in site.getsitepackages()
        for f in glob.glob(os.path.join(sp, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The test binary reads its fixtures under the directory it was compiled in: point that path here.
manifest=$(cat "$bundle/MANIFEST_DIR")
if [ "$manifest" != "$root" ]; then
    if [ -e "$manifest" ] && [ ! -L "$manifest" ]; then
        [ -d "$manifest/tests/fixtures" ] || fail "$manifest exists and is not this checkout; move it away"
    else
        mkdir -p "$(dirname "$manifest")" && ln -sfn "$root" "$manifest" ||
            fail "cannot link $manifest to this checkout (the test binary's fixture path)"
    fi
fi

status=0
start=$(date +%s)
# The model comparisons, with the model on the GPU: every test of qwen_parity (hidden states, logits, vision,
# every hook point, steering, generation; f32 at 1e-4, bf16 at 1e-1, f16 at 2e-2 against transformers) and the
# trained colour model's (transformers' hidden states, answers, word probabilities, a steered forward). Tests
# that run the `huescan` CLI are left out: the CLI runs on the CPU there.
HUESCAN_TEST_DEVICE=cuda timeout 240 "$bundle/it" qwen_parity qwen_colour::trained_model_matches \
    --test-threads 4 >"$results/parity.log" 2>&1
parity=$?
[ $parity -eq 0 ] || status=1
parity_line=$(grep -E '^test result' "$results/parity.log" | tail -1)
echo "parity on CUDA: exit $parity, ${parity_line:-no test result line (see parity.log)}" | tee "$results/summary.txt"

if [ "${GPU_CHECK_SKIP_BENCH:-0}" != 1 ]; then
    # The job benchmark: scripts/bench/extract_job.py when it knows the GPU, else this script's own.
    if python3 scripts/bench/extract_job.py --help 2>/dev/null | grep -q -- '--device' &&
        python3 scripts/bench/extract_job.py --help 2>/dev/null | grep -q -- '--huescan'; then
        bench=(python3 scripts/bench/extract_job.py --device cuda --huescan "$bundle/huescan")
    else
        bench=(python3 scripts/bench/gpu_job.py --huescan "$bundle/huescan" --out "$results/gpu_job.json")
    fi
    PYTHONUNBUFFERED=1 timeout 360 "${bench[@]}" >"$results/gpu_job.md" 2>&1
    b=$?
    [ $b -eq 0 ] || status=1
    echo "job benchmark (${bench[1]}): exit $b" | tee -a "$results/summary.txt"
    grep -E '^\|' "$results/gpu_job.md" | tee -a "$results/summary.txt"
fi
echo "gpu_check.sh: $(($(date +%s) - start)) s, results in $results" | tee -a "$results/summary.txt"
exit $status
