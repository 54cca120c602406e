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
# - candle-kernels links libcudart (its static MoE kernels); the bundle carries the wheel's libcudart.so.13 and
#   the binaries find it through an `$ORIGIN` rpath.
#
# The bundle (target/cuda-release/bundle: huescan, it (the test binary), libcudart.so.13, MANIFEST_DIR) is
# git-ignored; the device tool's `carry` takes it to a GPU machine, where scripts/gpu_check.sh runs it.
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
# `-lcudart` needs the unversioned name; the wheel has only the soname.
ln -sfn libcudart.so.13 "$toolkit/lib/libcudart.so"
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

# The sources git knows (tracked, or untracked and not ignored), mtimes kept so cargo rebuilds only what
# changed; the copy's Cargo.lock is the project's until the patch rewrites it.
mkdir -p "$out/src"
git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C "$out/src"
cd "$out/src"
patch="patch.crates-io.cudarc.path=\"$out/cudarc\""
export CARGO_TARGET_DIR="$out/src/target"
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath,\$ORIGIN"
cargo build --release --features cuda --bin huescan --config "$patch"
# The integration tests' executable; it names itself `it-<hash>` and cargo prints which one it built.
test_exe=$(cargo test --release --features cuda --test it --no-run --config "$patch" --message-format json \
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
cp "$toolkit/lib/libcudart.so.13" "$bundle/"
# The test binary reads its fixtures under the CARGO_MANIFEST_DIR it was compiled in; gpu_check.sh links that
# path to the checkout it runs in.
echo "$out/src" >"$bundle/MANIFEST_DIR"
for f in "$bundle"/*; do
    if readelf -d "$f" 2>/dev/null | grep -E 'NEEDED.*(libcuda\.|libcublas|libcurand|libnvrtc)'; then
        echo "build_cuda_binary.sh: $f still links a CUDA library that needs the driver or cuBLAS" >&2
        exit 1
    fi
done
du -b "$bundle"/*
echo "CUDA $cuda_version bundle for sm_$CUDA_COMPUTE_CAP in $bundle ($(du -sb "$bundle" | cut -f1) bytes)"
