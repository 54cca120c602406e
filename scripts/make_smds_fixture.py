#!/usr/bin/env python3
"""Regenerates tests/fixtures/smds/ from the Python SMDS package (smds 1.6.6), for huescan's compat-mode parity tests.

How to run (from the repository root, any python3):

    python3 scripts/make_smds_fixture.py

It creates scripts/.venv-smds with pyenv's Python 3.12 (~/.pyenv/versions/3.12.1/bin/python; smds needs >= 3.12),
installs `smds==1.6.6 --no-deps` plus numpy, scipy, scikit-learn, pandas, joblib and safetensors (the package's full
dependency list pulls in streamlit and notebook), and re-runs itself inside it. Output:

    tests/fixtures/smds/inputs.safetensors   activations (float16, widened to float64 by both sides) + hues per case
    tests/fixtures/smds/expected.json        package outputs (NaN/inf written as strings "nan", "inf", "-inf")

Cases: a planted circle, semicircle, line, pure noise and a circle with a 90-degree gap, at 60 samples (hue 0..354 step
6, d=300) and 360 samples (hue 0..359, d=400), rows sorted by hue, seeded. For each case: in-sample fit+score of 7 shapes
at alpha 1e-4 and 1.0 (all five metrics), Circular/Euclidean coordinates, and discover_manifolds (unshuffled 5-fold,
alpha 1.0) with its fold indices. Then the seed notebook's sections 4-10, verbatim apart from the 1.6.6 constructor
name, on two sets whose "layers" are the noise/line/semicircle/circle cases.
"""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "scripts" / ".venv-smds"
PY312 = Path.home() / ".pyenv" / "versions" / "3.12.1" / "bin" / "python"
OUT = ROOT / "tests" / "fixtures" / "smds"
PACKAGES = ["numpy", "scipy", "scikit-learn", "pandas", "joblib", "safetensors"]


def ensure_venv() -> None:
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.check_call([str(PY312), "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "--no-deps", "smds==1.6.6"])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PACKAGES])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402

# The discovery pipeline imports its plotting helpers (plotly, matplotlib, seaborn) at module load; with
# save_results=False they are never called, so stand-ins keep those heavy packages out of the venv.
for name, attr in [("smds.pipeline.helpers.interactive_plots", "generate_interactive_plot"),
                   ("smds.pipeline.helpers.plots", "create_plots")]:
    stub = types.ModuleType(name)
    setattr(stub, attr, lambda *a, **k: (_ for _ in ()).throw(RuntimeError("plotting is stubbed out")))
    sys.modules[name] = stub

import pandas as pd  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.metrics import mean_squared_error, r2_score  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402
import colorsys  # noqa: E402

import smds  # noqa: E402
from smds import ComputedSMDSParametrization, SupervisedMDS, UserProvidedSMDSParametrization  # noqa: E402
from smds.pipeline.discovery_pipeline import discover_manifolds  # noqa: E402
import smds.shapes.continuous_shapes as shapes  # noqa: E402
from smds.shapes.discrete_shapes import ClusterShape, DiscreteCircularShape  # noqa: E402
from smds.stress.stress_metrics import StressMetrics  # noqa: E402

METRICS = [m.value for m in StressMetrics]
SHAPES = {
    "CircularShape": shapes.CircularShape,
    "SemicircularShape": shapes.SemicircularShape,
    "EuclideanShape": shapes.EuclideanShape,
    "DiscreteCircularShape": DiscreteCircularShape,
    "SpiralShape": shapes.SpiralShape,
    "LogLinearShape": shapes.LogLinearShape,
    "ClusterShape": ClusterShape,
}


def enc(v):
    """JSON-safe floats: NaN and infinities as strings."""
    if isinstance(v, dict):
        return {k: enc(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, np.ndarray):
        return enc(v.tolist())
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if np.isnan(v):
            return "nan"
        if np.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def make_case(kind: str, n: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    hue = np.arange(n, dtype=np.float64) * (360.0 / n)
    if kind == "gap":
        hue = hue[(hue < 150.0) | (hue >= 240.0)]
    t = hue / 360.0
    if kind in ("circle", "gap"):
        sig = 3.0 * np.column_stack([np.cos(2 * np.pi * t), np.sin(2 * np.pi * t)])
    elif kind == "semicircle":
        sig = 3.0 * np.column_stack([np.cos(np.pi * t), np.sin(np.pi * t)])
    elif kind == "line":
        sig = np.column_stack([6.0 * t, np.zeros_like(t)])
    else:
        sig = np.zeros((len(t), 2))
    q, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    x = sig @ q.T + rng.normal(size=(len(t), d)) + 5.0 * (np.arange(d) % 7 == 0)
    return x.astype(np.float16), hue


def fit_scores(X, y, shape_cls, alpha):
    model = SupervisedMDS(ComputedSMDSParametrization(manifold=shape_cls(), n_components=2), alpha=alpha)
    model.fit(X, y)
    return model, [float(model.score(X, y, metric=m)) for m in METRICS]


def case_outputs(X, hue):
    y = (hue % 360.0) / 360.0
    out = {"full": {}, "coords": {}, "discover": {}}
    for alpha in (1e-4, 1.0):
        for name, cls in SHAPES.items():
            model, scores = fit_scores(X, y, cls, alpha)
            out["full"][f"{name}@{alpha:g}"] = scores
            if alpha == 1e-4 and name in ("CircularShape", "EuclideanShape"):
                out["coords"][name] = model.transform(X)
    df, _ = discover_manifolds(X, y, shapes=[c() for c in SHAPES.values()], n_folds=5, n_jobs=1,
                               save_results=False, create_png_visualization=False, clear_cache=True)
    out["discover"]["ranking"] = list(df["shape"])
    out["discover"]["rows"] = {
        r["shape"]: {**{f"mean_{m}": r[f"mean_{m}"] for m in METRICS}, **{f"std_{m}": r[f"std_{m}"] for m in METRICS},
                     **{f"fold_{m}": list(r[f"fold_{m}"]) for m in METRICS}}
        for _, r in df.iterrows()
    }
    out["discover"]["fold_test_idx"] = [te.tolist() for _, te in KFold(5).split(X)]
    return out


# ---- the seed notebook, sections 4-10 (helpers verbatim; `stage_1=` became the 1.6.6 positional argument) ----
METRIC_COL = "mean_scale_normalized_stress"
CANDIDATE_SHAPES = [shapes.CircularShape(), shapes.SemicircularShape(), shapes.EuclideanShape()]
SHAPE_FACTORIES = {
    "CircularShape": lambda: shapes.CircularShape(),
    "SemicircularShape": lambda: shapes.SemicircularShape(),
    "EuclideanShape": lambda: shapes.EuclideanShape(),
}


def fit_shape_smds(X, y, shape_obj):
    stage_1 = ComputedSMDSParametrization(manifold=shape_obj, n_components=2)
    model = SupervisedMDS(stage_1, alpha=1e-4)
    model.fit(X, y)
    return model


def run_layerwise_circular_stress(layer_data, layers, hue_norm):
    records = []
    for layer in layers:
        X_layer = np.asarray(layer_data[layer], dtype=np.float64)
        model = fit_shape_smds(X_layer, hue_norm, shapes.CircularShape())
        score = float(model.score(X_layer, hue_norm))
        records.append({"layer": layer, "score": score, "stress": 1.0 - score})
    return pd.DataFrame(records).sort_values("layer").reset_index(drop=True)


def periodic_train_test_split(angles_deg, test_fraction=0.2, offset=0):
    angles = np.asarray(angles_deg, dtype=np.float64)
    n = angles.shape[0]
    if n < 8:
        raise ValueError(f"Not enough samples for stable split: n={n}")
    order = np.argsort(angles)
    step = max(int(round(1.0 / test_fraction)), 2)
    test_mask = np.zeros(n, dtype=bool)
    test_mask[order[offset::step]] = True
    if test_mask.sum() == 0 or test_mask.sum() >= n:
        test_mask[:] = False
        test_mask[order[::step]] = True
        if test_mask.sum() >= n:
            test_mask[order[-1]] = False
    return np.where(~test_mask)[0], np.where(test_mask)[0]


def discover_on_train(X_train, y_train, label):
    n_folds = min(5, max(2, int(X_train.shape[0] // 10)))
    results_df, _ = discover_manifolds(X=X_train, y=y_train, shapes=CANDIDATE_SHAPES, n_folds=n_folds, n_jobs=1,
                                       save_results=False, create_png_visualization=False, clear_cache=True,
                                       experiment_name=f"qwen_color_train_{label}")
    return results_df.sort_values(METRIC_COL, ascending=False).reset_index(drop=True)


def seam_closure_ratio(coords, angles_deg):
    angles = np.asarray(angles_deg, dtype=np.float64)
    unique = np.unique(np.sort(angles))
    step = float(np.median(np.diff(unique))) if unique.size > 1 else 1.0
    low_value, high_value = float(unique.min()), float(unique.max())
    low_idx = np.where(np.abs(angles - low_value) <= step / 2.0 + 1e-9)[0]
    high_idx = np.where(np.abs(angles - high_value) <= step / 2.0 + 1e-9)[0]
    seam_distance = float(np.linalg.norm(coords[low_idx].mean(axis=0) - coords[high_idx].mean(axis=0)))
    order = np.argsort(angles)
    sorted_coords = coords[order]
    local_steps = np.linalg.norm(sorted_coords[1:] - sorted_coords[:-1], axis=1)
    local_steps = local_steps[local_steps > 0]
    local_scale = float(np.median(local_steps)) if local_steps.size > 0 else 1.0
    return seam_distance / (local_scale + 1e-12)


def hue_coverage_ratio(angles_deg):
    unique = np.unique(np.sort(np.asarray(angles_deg, dtype=np.float64)))
    if unique.size <= 1:
        return 0.0
    step = float(np.median(np.diff(unique)))
    return float(unique.max() - unique.min() + step) / 360.0


def periodicity_score(closure_ratio):
    return float(np.exp(-closure_ratio))


def build_template_3d(angles_deg, shape_name):
    hue = (np.asarray(angles_deg, dtype=np.float64) % 360.0) / 360.0
    theta = np.pi * hue if shape_name == "SemicircularShape" else 2.0 * np.pi * hue
    return np.column_stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)])


def hue_to_rgb(angle_deg):
    return colorsys.hsv_to_rgb((angle_deg % 360.0) / 360.0, 1.0, 1.0)


def rgb_to_hue_deg(rgb):
    r, g, b = np.clip(rgb, 0.0, 1.0)
    hue, _, _ = colorsys.rgb_to_hsv(float(r), float(g), float(b))
    return (hue * 360.0) % 360.0


def mean_vector_at_angle(X, angles_deg, target_deg):
    circular_delta = np.abs(((angles_deg - target_deg + 180.0) % 360.0) - 180.0)
    idx = np.where(circular_delta == circular_delta.min())[0]
    return X[idx].mean(axis=0)


def circular_hue_error(pred_deg, target_deg):
    return float(((pred_deg - target_deg + 180.0) % 360.0) - 180.0)


def notebook(scans):
    res = {}
    stress_tables, optimal_rows = {}, []
    for dataset_name, bundle in scans.items():
        stress_df = run_layerwise_circular_stress(bundle["layer_data"], bundle["layers"], bundle["hue_norm"])
        stress_tables[dataset_name] = stress_df
        best_idx = int(stress_df["stress"].idxmin())
        optimal_rows.append({"dataset": dataset_name, "optimal_layer": int(stress_df.loc[best_idx, "layer"]),
                             "min_stress": float(stress_df.loc[best_idx, "stress"]),
                             "max_score": float(stress_df.loc[best_idx, "score"])})
    optimal_layers_df = pd.DataFrame(optimal_rows).sort_values("dataset").reset_index(drop=True)
    res["stress"] = {k: v.to_dict(orient="list") for k, v in stress_tables.items()}
    res["optimal_layers"] = optimal_layers_df.to_dict(orient="records")

    split_rows, discovery_long_rows, disc = [], [], {}
    for _, row in optimal_layers_df.iterrows():
        dataset_name, optimal_layer = row["dataset"], int(row["optimal_layer"])
        bundle = scans[dataset_name]
        X_opt = np.asarray(bundle["layer_data"][optimal_layer], dtype=np.float64)
        y_opt = np.asarray(bundle["hue_norm"], dtype=np.float64)
        angles_opt = np.asarray(bundle["angles_deg"], dtype=np.float64)
        train_idx, test_idx = periodic_train_test_split(angles_opt, test_fraction=0.2, offset=0)
        X_train, X_test = X_opt[train_idx], X_opt[test_idx]
        y_train, y_test = y_opt[train_idx], y_opt[test_idx]
        angles_test = angles_opt[test_idx]
        split_rows.append({"dataset": dataset_name, "optimal_layer": optimal_layer, "n_total": int(X_opt.shape[0]),
                           "n_train": int(X_train.shape[0]), "n_test": int(X_test.shape[0]),
                           "train_idx": train_idx.tolist(), "test_idx": test_idx.tolist()})
        result_df = discover_on_train(X_train, y_train, label=dataset_name)
        disc[dataset_name] = {r["shape"]: {**{f"mean_{m}": r[f"mean_{m}"] for m in METRICS},
                                           **{f"std_{m}": r[f"std_{m}"] for m in METRICS},
                                           **{f"fold_{m}": list(r[f"fold_{m}"]) for m in METRICS}}
                              for _, r in result_df.iterrows()}
        disc[dataset_name]["ranking"] = list(result_df["shape"])
        for _, r in result_df.iterrows():
            shape_name = str(r["shape"])
            model = fit_shape_smds(X_train, y_train, SHAPE_FACTORIES[shape_name]())
            test_score = float(model.score(X_test, y_test))
            test_coords = model.transform(X_test)
            closure = seam_closure_ratio(test_coords, angles_test)
            discovery_long_rows.append({
                "dataset": dataset_name, "shape": shape_name, "train_cv_score": float(r[METRIC_COL]),
                "train_cv_std": float(r.get("std_scale_normalized_stress", np.nan)), "test_score": test_score,
                "test_scores_all": [float(model.score(X_test, y_test, metric=m)) for m in METRICS],
                "test_closure_ratio": float(closure), "periodicity_score": periodicity_score(float(closure)),
                "coverage_ratio": float(hue_coverage_ratio(angles_opt))})
    res["split"] = split_rows
    res["discovery"] = disc
    arb_df = pd.DataFrame(discovery_long_rows)
    arb_df["composite_score"] = 0.7 * arb_df["test_score"] + 0.3 * arb_df["periodicity_score"]
    res["arbitration"] = arb_df.to_dict(orient="records")
    winners = []
    for dataset_name, group in arb_df.groupby("dataset"):
        w = group.sort_values("composite_score", ascending=False).iloc[0]
        winners.append({"dataset": dataset_name, "winner_shape": w["shape"], "winner_composite": float(w["composite_score"])})
    res["dataset_winners"] = winners
    global_shape_df = (arb_df.groupby("shape").agg(
        mean_train_cv_score=("train_cv_score", "mean"), mean_test_score=("test_score", "mean"),
        mean_periodicity=("periodicity_score", "mean"), mean_composite=("composite_score", "mean"),
        std_composite=("composite_score", "std"), n_domains=("dataset", "count"))
        .reset_index().sort_values("mean_composite", ascending=False))
    global_winner_shape = str(global_shape_df.iloc[0]["shape"])
    res["global"] = global_shape_df.to_dict(orient="records")
    res["global_winner"] = global_winner_shape

    res["projection"] = {}
    for row in optimal_layers_df.itertuples(index=False):
        bundle = scans[row.dataset]
        X_opt = np.asarray(bundle["layer_data"][int(row.optimal_layer)], dtype=np.float64)
        template = build_template_3d(bundle["angles_deg"], global_winner_shape)
        stage_1_3d = UserProvidedSMDSParametrization(y=template, n_components=3, name=f"{row.dataset}_template")
        coords = SupervisedMDS(stage_1_3d, alpha=1e-4).fit_transform(X_opt, template)
        res["projection"][row.dataset] = {"shape": global_winner_shape, "coords": coords}

    steering_pairs = [(240.0, 0.0, "Blue→Red"), (0.0, 120.0, "Red→Green"), (120.0, 240.0, "Green→Blue")]
    alphas = np.array([-0.25, 0.00, 0.25, 0.50, 0.75, 1.00, 1.25], dtype=np.float64)
    res["joystick"] = {}
    for row in optimal_layers_df.itertuples(index=False):
        bundle = scans[row.dataset]
        angles = np.asarray(bundle["angles_deg"], dtype=np.float64)
        X_opt = np.asarray(bundle["layer_data"][int(row.optimal_layer)], dtype=np.float64)
        y_rgb = np.array([hue_to_rgb(a) for a in angles], dtype=np.float64)
        decoder = LinearRegression().fit(X_opt, y_rgb)
        recon_rgb = np.clip(decoder.predict(X_opt), 0.0, 1.0)
        blue_vec, red_vec = mean_vector_at_angle(X_opt, angles, 240.0), mean_vector_at_angle(X_opt, angles, 0.0)
        steered = blue_vec + 0.85 * (red_vec - blue_vec)
        dec = lambda v: rgb_to_hue_deg(np.clip(decoder.predict(v.reshape(1, -1))[0], 0.0, 1.0))  # noqa: E731
        rows = []
        for source_deg, target_deg, label in steering_pairs:
            s, t = mean_vector_at_angle(X_opt, angles, source_deg), mean_vector_at_angle(X_opt, angles, target_deg)
            for a in alphas:
                h = dec(s + a * (t - s))
                rows.append({"pair": label, "alpha": float(a), "decoded_hue": float(h),
                             "target_error_deg": circular_hue_error(h, target_deg)})
        res["joystick"][row.dataset] = {
            "decoder_mse": float(mean_squared_error(y_rgb, recon_rgb)), "decoder_r2": float(r2_score(y_rgb, recon_rgb)),
            "decoded_blue_hue": float(dec(blue_vec)), "decoded_steered_hue": float(dec(steered)),
            "decoded_red_hue": float(dec(red_vec)), "rows": rows}
    return res


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tensors, expected = {}, {"smds_version": smds.__version__ if hasattr(smds, "__version__") else "1.6.6",
                             "numpy": np.__version__, "metrics": METRICS, "cases": {}}
    cases = {}
    for n, d in ((60, 300), (360, 400)):
        for i, kind in enumerate(["circle", "semicircle", "line", "noise", "gap"]):
            name = f"{kind}{n}"
            x, hue = make_case(kind, n, d, seed=1000 * n + i)
            cases[name] = (x, hue)
            tensors[f"{name}.x"] = x
            tensors[f"{name}.hue_deg"] = hue
            expected["cases"][name] = case_outputs(x.astype(np.float64), hue)
            print(f"case {name}: {x.shape}", flush=True)
    scans = {}
    for n in (60, 360):
        kinds = ["noise", "line", "semicircle", "circle"]
        hue = cases[f"circle{n}"][1]
        scans[f"set{n}"] = {"layer_data": {li: cases[f"{k}{n}"][0].astype(np.float64) for li, k in enumerate(kinds)},
                            "layers": list(range(len(kinds))), "angles_deg": hue, "hue_norm": (hue % 360.0) / 360.0}
    expected["notebook_layers"] = ["noise", "line", "semicircle", "circle"]
    expected["notebook"] = notebook(scans)
    save_file(tensors, str(OUT / "inputs.safetensors"))
    (OUT / "expected.json").write_text(json.dumps(enc(expected), indent=None, allow_nan=False) + "\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
