#!/usr/bin/env python3
"""Regenerate tests/fixtures/joblib-converted/: a tiny pickle in the seed notebook's format, converted by
scripts/convert_joblib_scan.py, so a Rust test proves a Python-written store reads in huescan.

    python3 -m venv scripts/.venv-convert && scripts/.venv-convert/bin/pip install joblib numpy
    scripts/.venv-convert/bin/python scripts/make_joblib_fixture.py
"""
import os
import subprocess
import sys
import tempfile

import joblib
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "tests", "fixtures", "joblib-converted")
rng = np.random.default_rng(0)
angles = np.arange(0, 360, 30, dtype=np.float64)  # 12 hues
theta = np.deg2rad(angles)
layer_data = {}
for layer in range(3):
    x = rng.normal(size=(12, 16)) * 0.1
    x[:, 0] += (layer + 1) * np.cos(theta)
    x[:, 1] += (layer + 1) * np.sin(theta)
    layer_data[layer] = x.astype(np.float64)
with tempfile.TemporaryDirectory() as tmp:
    pkl = os.path.join(tmp, "tiny_scan.pkl")
    joblib.dump({"layer_data": layer_data, "angles": list(angles)}, pkl)
    # The pickle's hash would change with joblib versions; pin the recorded source hash via the name only.
    subprocess.run([sys.executable, os.path.join(here, "convert_joblib_scan.py"), pkl, out,
                    "--model-id", "synthetic", "--stimuli-name", "tiny_scan"], check=True)
# Raw little-endian f32 [12, 16], so the Rust test needs no npy parser.
layer_data[1].astype("<f4").tofile(os.path.join(out, "expected_layer_001.f32le"))
