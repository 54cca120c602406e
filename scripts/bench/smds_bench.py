#!/usr/bin/env python3
"""Benchmark: huescan's Rust analysis vs the Python SMDS package (smds 1.6.6) on the same data, same machine, one run.

    python3 scripts/bench/smds_bench.py [--layers 36] [--n 360] [--d 2048]

Uses the virtualenv of scripts/make_smds_fixture.py (scripts/.venv-smds; run that script once to create it).
Writes the data once (float32 safetensors, planted circle of growing amplitude + N(0,1) noise, hue 0..359, seeded) to
/tmp/huescan-smds-bench/, runs `cargo bench --bench analysis` on it, then the same workload in Python, and prints a
table. Workload, both sides, compat mode (the package's labels and unshuffled folds):
  per layer: the notebook's scan fit (Circular, alpha 1e-4, fit and score on all samples) + 5-fold CV
             (`discover_manifolds`, alpha 1.0) of Circular, Semicircular, Euclidean on all samples;
  at the optimal layer: periodic split, discovery on train, refit + held-out score + seam closure per shape,
             arbitration, 3-D template projection.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / "scripts" / ".venv-smds" / "bin" / "python"
if Path(sys.prefix).resolve() != (ROOT / "scripts" / ".venv-smds").resolve():
    if not VENV_PY.exists():
        sys.exit("run scripts/make_smds_fixture.py once first: it creates scripts/.venv-smds")
    os.execv(str(VENV_PY), [str(VENV_PY), __file__, *sys.argv[1:]])

import numpy as np  # noqa: E402

for name, attr in [("smds.pipeline.helpers.interactive_plots", "generate_interactive_plot"),
                   ("smds.pipeline.helpers.plots", "create_plots")]:
    stub = types.ModuleType(name)
    setattr(stub, attr, lambda *a, **k: None)
    sys.modules[name] = stub

from safetensors.numpy import save_file  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import make_smds_fixture as nb  # noqa: E402  (the notebook's helpers, verbatim)
from smds import SupervisedMDS, UserProvidedSMDSParametrization  # noqa: E402
from smds.pipeline.discovery_pipeline import discover_manifolds  # noqa: E402


def python_workload(layers, hue):
    y = (hue % 360.0) / 360.0
    scan = []
    for X in layers:
        X = X.astype(np.float64)
        model = nb.fit_shape_smds(X, y, nb.shapes.CircularShape())
        scan.append(float(model.score(X, y)))
        discover_manifolds(X, y, shapes=nb.CANDIDATE_SHAPES, n_folds=5, n_jobs=1, save_results=False,
                           create_png_visualization=False, clear_cache=True)
    best = int(np.argmax(scan))
    X = layers[best].astype(np.float64)
    tr, te = nb.periodic_train_test_split(hue)
    df = nb.discover_on_train(X[tr], y[tr], "bench")
    rows = []
    for _, r in df.iterrows():
        m = nb.fit_shape_smds(X[tr], y[tr], nb.SHAPE_FACTORIES[r["shape"]]())
        ts = float(m.score(X[te], y[te]))
        cl = nb.seam_closure_ratio(m.transform(X[te]), hue[te])
        rows.append((r["shape"], 0.7 * ts + 0.3 * nb.periodicity_score(cl)))
    winner = max(rows, key=lambda r: r[1])[0]
    tpl = nb.build_template_3d(hue, winner)
    SupervisedMDS(UserProvidedSMDSParametrization(y=tpl, n_components=3), alpha=1e-4).fit_transform(X, tpl)
    return best, winner


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=36)
    ap.add_argument("--n", type=int, default=360)
    ap.add_argument("--d", type=int, default=2048)
    args = ap.parse_args()
    out = Path("/tmp/huescan-smds-bench")
    out.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    hue = np.arange(args.n, dtype=np.float64) * (360.0 / args.n)
    t = np.deg2rad(hue)
    layers = []
    for li in range(args.layers):
        q, _ = np.linalg.qr(rng.normal(size=(args.d, 2)))
        amp = 3.0 * li / args.layers
        x = amp * np.column_stack([np.cos(t), np.sin(t)]) @ q.T + rng.normal(size=(args.n, args.d))
        layers.append(x.astype(np.float32))
    data = out / "data.safetensors"
    save_file({**{f"layer.{i}": x for i, x in enumerate(layers)}, "hue_deg": hue}, str(data))

    env = {**os.environ, "HUESCAN_BENCH_DATA": str(data)}
    env.setdefault("CARGO_TARGET_DIR", str(ROOT / "target"))
    t0 = time.perf_counter()
    res = subprocess.run(["cargo", "bench", "--bench", "analysis"], cwd=ROOT, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(res.stderr)
    rust = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    print(f"(cargo bench incl. build check: {time.perf_counter() - t0:.1f} s)", flush=True)

    t0 = time.perf_counter()
    best, winner = python_workload(layers, hue)
    py_secs = time.perf_counter() - t0
    import resource
    py_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    print(f"\nworkload: {args.layers} layers x {args.n} samples x {args.d} dims, compat mode, {os.cpu_count()} cores")
    print(f"{'implementation':48s} {'seconds':>9s} {'speed-up':>9s} {'peak RSS MB':>12s}  chosen/winner")
    print(f"{'python smds 1.6.6 (numpy ' + np.__version__ + ')':48s} {py_secs:9.2f} {1.0:9.1f} {py_rss:12.0f}  layer {best} / {winner}")
    for r in rust:
        print(f"{'huescan ' + r['config']:48s} {r['seconds']:9.2f} {py_secs / r['seconds']:9.1f} {r['peak_rss_mb']:12.0f}  "
              f"layer {r['chosen_layer']} / {r['winner']}")


if __name__ == "__main__":
    main()
