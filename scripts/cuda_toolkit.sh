# Sourced by scripts/check_cuda_build.sh and scripts/build_cuda_binary.sh: `cuda_toolkit DIR VERSION CCCL`
# unpacks NVIDIA's nvcc, headers and runtime from PyPI wheels into DIR (no root, no driver, no GPU) unless DIR
# already holds an nvcc, then puts it on PATH with the variables candle's and cudarc's build scripts read.
cuda_toolkit() {
    local toolkit=$1 version=$2 cccl=$3
    if [ ! -x "$toolkit/bin/nvcc" ]; then
        local wheels unpacked
        wheels=$(mktemp -d)
        python3 -m pip download --quiet --no-deps --dest "$wheels" \
            "nvidia-cuda-nvcc==$version" "nvidia-cuda-runtime==$version" "nvidia-cuda-crt==$version" \
            "nvidia-nvvm==$version" "nvidia-cuda-cccl${cccl:+==$cccl}"
        unpacked=$(mktemp -d)
        for w in "$wheels"/*.whl; do python3 -m zipfile -e "$w" "$unpacked"; done
        mkdir -p "$(dirname "$toolkit")"
        rm -rf "$toolkit"
        mv "$unpacked/nvidia/cu13" "$toolkit"
        chmod +x "$toolkit"/bin/* "$toolkit"/nvvm/bin/*
        ln -sfn lib "$toolkit/lib64"
        rm -rf "$wheels" "$unpacked"
    fi
    toolkit=$(cd "$toolkit" && pwd)
    export PATH="$toolkit/bin:$PATH" CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit"
    nvcc --version | tail -1
}
