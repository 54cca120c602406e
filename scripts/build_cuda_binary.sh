#!/usr/bin/env bash
# Builds a linked, stripped `huescan` with `--features cuda` (and the integration-test binary, for the model
# parity checks of scripts/gpu_check.sh) on a machine without a GPU, a driver or a CUDA install.
#
#     scripts/build_cuda_binary.sh        # 20-40 min on 2 cores; writes target/cuda-release/bundle/
#
# What it takes to link without the driver or cuBLAS:
# - nvcc, headers and the CUDA runtime come from PyPI wheels (scripts/cuda_toolkit.sh). The default toolkit is
#   CUDA 13.0 because candle's kernels ship as PTX, which the driver JIT-compiles at start: a driver refuses PTX
#   from a newer toolkit (CUDA_ERROR_UNSUPPORTED_PTX_VERSION), and the lent H200s run driver 580 (CUDA 13.0).
# - candle-core 0.11 asks cudarc for `dynamic-linking` (-lcuda -lcublas -lcublasLt -lcurand -lnvrtc at link
#   time). Cargo features only add up, so no feature of ours can turn that off, and cudarc refuses
#   `dynamic-loading` next to it. Instead this builds against a copy of cudarc whose build script maps
#   `dynamic-linking` to `dynamic-loading` (dlopen of libcuda, libcublas, ... at first use), through
#   `--config patch.crates-io.cudarc.path=...`. A patch rewrites Cargo.lock, so the build runs in a copy of the
#   sources (target/cuda-release/src) and the project's Cargo.lock is never touched.
# - candle-kernels also compiles its quantized GGUF/MoE kernels (mmq/mmvq/moe, ~15 template-heavy .cu files)
#   to sm_90a machine code into a static library that needs libcudart: 5-25 minutes per file on 2 shared cores.
#   huescan never runs quantized models, so a patched copy of candle-kernels links a stub library instead, each
#   of its functions a message and abort(); the PTX kernels huescan uses are built as before. Nothing then
#   links libcudart either.
#
# The bundle (target/cuda-release/bundle: huescan, it (the test binary), MANIFEST_DIR) is git-ignored; the
# device tool's `carry` takes it to a GPU machine, where scripts/gpu_check.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=${CUDA_BUILD_DIR:-target/cuda-release}
cuda_version=${CUDA_WHEEL_VERSION:-13.0.88}
toolkit=${CUDA_TOOLKIT_DIR:-target/cuda-toolkit-$cuda_version}
# shellcheck source=scripts/cuda_toolkit.sh
. scripts/cuda_toolkit.sh
cuda_toolkit "$toolkit" "$cuda_version" "${CUDA_CCCL_VERSION:-13.0.85}"
toolkit=$(cd "$toolkit" && pwd)
major=${cuda_version%%.*}
minor=${cuda_version#*.}
minor=${minor%%.*}
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-$((major * 1000 + minor * 10))}

mkdir -p "$out"
out=$(cd "$out" && pwd)

# cudarc, as locked, with `dynamic-linking` meaning dynamic loading.
cargo fetch --locked --quiet
ver=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "cudarc-$ver" | head -1)
if [ -z "$src" ]; then
    echo "build_cuda_binary.sh: cudarc $ver (from Cargo.lock) is not in the cargo registry after cargo fetch" >&2
    exit 1
fi
# Made once per version: a fresh copy would give cargo new mtimes and rebuild everything above cudarc.
if [ ! -f "$out/cudarc/.huescan-patched-$ver" ]; then
rm -rf "$out/cudarc"
cp -a "$src" "$out/cudarc"
python3 - "$out/cudarc/build.rs" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
link = '    #[cfg(feature = "dynamic-linking")]\n    dynamic_linking(major, minor);\n'
load = '    // huescan: link nothing, load the libraries at run time.\n    println!("cargo:rustc-cfg=feature=\\"dynamic-loading\\"");\n'
if text.count(link) != 1:
    sys.exit(f"build_cuda_binary.sh: {path} no longer has the one dynamic_linking call this script replaces")
open(path, "w").write(text.replace(link, load))
PY
touch "$out/cudarc/.huescan-patched-$ver"
fi

# candle-kernels, as locked, with the quantized kernels' library replaced by stubs.
kver=$(awk '/^name = "candle-kernels"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
ksrc=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "candle-kernels-$kver" | head -1)
[ -n "$ksrc" ] || { echo "build_cuda_binary.sh: candle-kernels $kver is not in the cargo registry" >&2; exit 1; }
if [ ! -f "$out/candle-kernels/.huescan-patched-$kver" ]; then
rm -rf "$out/candle-kernels" "$out/stub"
cp -a "$ksrc" "$out/candle-kernels"
mkdir -p "$out/stub"
{
    echo '#include <stdio.h>'
    echo '#include <stdlib.h>'
    for f in $(grep -o 'pub fn [A-Za-z0-9_]*' "$out/candle-kernels/src/ffi.rs" | cut -d' ' -f3 | sort -u); do
        echo "void $f(void) { fputs(\"huescan's CUDA build has no quantized (GGUF/MoE) kernels: $f\\n\", stderr); abort(); }"
    done
} >"$out/stub/moe_stub.c"
cc -O2 -fPIC -c "$out/stub/moe_stub.c" -o "$out/stub/moe_stub.o"
ar rcs "$out/stub/libmoe.a" "$out/stub/moe_stub.o"
python3 - "$out/candle-kernels/build.rs" "$out/stub" <<'PY'
import sys
path, stub = sys.argv[1], sys.argv[2]
text = open(path).read()
start = text.find("    let mut moe_sources = vec![")
if start < 0 or text.count("moe_builder.build_lib(") != 1:
    sys.exit(f"build_cuda_binary.sh: {path} no longer builds libmoe the way this script replaces")
tail = (
    "    // huescan: stubs for the quantized kernels (scripts/build_cuda_binary.sh).\n"
    f'    println!("cargo:rustc-link-search=native={stub}");\n'
    '    println!("cargo:rustc-link-lib=static=moe");\n'
    "    Ok(())\n}\n"
)
open(path, "w").write(text[:start] + tail)
PY
touch "$out/candle-kernels/.huescan-patched-$kver"
fi

# The sources git knows (tracked, or untracked and not ignored), mtimes kept so cargo rebuilds only what
# changed; the copy's Cargo.lock is the project's until the patch rewrites it.
mkdir -p "$out/src"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$out/src"
cd "$out/src"
patch=(--config "patch.crates-io.cudarc.path=\"$out/cudarc\""
    --config "patch.crates-io.candle-kernels.path=\"$out/candle-kernels\"")
export CARGO_TARGET_DIR="$out/src/target"
# An `$ORIGIN` rpath: a CUDA library put beside the binary is found there (LD_LIBRARY_PATH works as well).
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath,\$ORIGIN"
cargo build --release --features cuda --bin huescan "${patch[@]}"
# The integration tests' executable; it names itself `it-<hash>` and cargo prints which one it built.
test_exe=$(cargo test --release --features cuda --test it --no-run "${patch[@]}" --message-format json \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')

bundle="$out/bundle"
rm -rf "$bundle"
mkdir -p "$bundle"
strip -o "$bundle/huescan" "$CARGO_TARGET_DIR/release/huescan"
strip -o "$bundle/it" "$test_exe"
# The test binary reads its fixtures under the CARGO_MANIFEST_DIR it was compiled in; gpu_check.sh links that
# path to the checkout it runs in.
echo "$out/src" >"$bundle/MANIFEST_DIR"
for f in "$bundle"/*; do
    if readelf -d "$f" 2>/dev/null | grep -E 'NEEDED.*(libcuda|libcublas|libcurand|libnvrtc)'; then
        echo "build_cuda_binary.sh: $f still links a CUDA library (it must load them at run time)" >&2
        exit 1
    fi
done
# Stripped, the two are ~65 MB (candle's PTX is text), over the device tool's 64 MiB with the tree; gzip'd ~18 MB.
# gpu_check.sh unpacks them.
gzip -9 -f "$bundle/huescan" "$bundle/it"
du -b "$bundle"/*
echo "CUDA $cuda_version bundle for sm_$CUDA_COMPUTE_CAP in $bundle ($(du -sb "$bundle" | cut -f1) bytes)"
