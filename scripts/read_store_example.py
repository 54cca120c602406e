#!/usr/bin/env python3
"""Read a huescan run the way a researcher would: numpy + safetensors only.

    huescan store export RUN/activations/SET --out acts.npz
    python scripts/read_store_example.py RUN SET acts.npz

Layers are picked by their index *name* (`X_12`), never by list position: a store made with
`--layers 0,2` has `X_0` and `X_2` and nothing else. The script projects the chosen layer with the
saved SMDS matrix and checks it reproduces the analysis's coordinates; it exits 1 if not.
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file


def main(run, set_name, npz_path):
    data = np.load(npz_path)
    layers = dict(zip(data["layer_index"].tolist(), data["hook"].tolist()))
    print(f"{len(data['hue_deg'])} samples; layers {layers}")
    summary = json.load(open(f"{run}/analysis/{set_name}/summary.json"))
    layer = summary["projection"]["layer"]
    X = data[f"X_{layer}"].astype(np.float64)  # by name: the analysis's layer index
    y = data["hue_deg"]
    proj = load_file(f"{run}/analysis/{set_name}/projection.safetensors")
    Z = (X - proj["mean"]) @ proj["weight"].T  # works for activations the fit never saw, too
    err = float(np.abs(Z - proj["coords"]).max())
    print(f"layer {layer}: projected {X.shape} -> {Z.shape}; max |Z - coords| = {err:.3g}")
    first = data["sample_id"][np.argmin(np.abs(y - 120.0))]
    print(f"sample nearest 120 deg: {first}")
    return 0 if err < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
