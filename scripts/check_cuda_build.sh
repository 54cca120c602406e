#!/usr/bin/env bash
# Compiles huescan with `--features cuda` on a machine without a GPU or a CUDA install, to catch code that only
# breaks in the CUDA build. NVIDIA's nvcc, headers and runtime come from PyPI wheels (no root, no driver);
# candle's kernels are compiled to PTX for CUDA_COMPUTE_CAP (default 90, H100). `cargo check` stops before
# linking; scripts/build_cuda_binary.sh builds the linked release binary the same way.
#
#     scripts/check_cuda_build.sh            # ~12 min on 2 cores; toolkit in target/cuda-toolkit (~400 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
toolkit=${CUDA_TOOLKIT_DIR:-target/cuda-toolkit}
# cudarc 0.19 (candle 0.11's) knows CUDA up to 13.4; 13.x toolkits share that driver API.
cuda_version=${CUDA_WHEEL_VERSION:-13.5.37}
# shellcheck source=scripts/cuda_toolkit.sh
. scripts/cuda_toolkit.sh
cuda_toolkit "$toolkit" "$cuda_version" "${CUDA_CCCL_VERSION:-}"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90} CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13040}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda-check} cargo check --locked --features cuda --all-targets
echo "huescan compiles with --features cuda (CUDA $cuda_version, sm_$CUDA_COMPUTE_CAP)"
