#!/usr/bin/env python3
"""Convert the seed notebook's joblib scans into a huescan activation store.

The notebook (shared/seeds/000_*.txt) cached Qwen2.5-VL activations as joblib pickles:

    {"layer_data": {layer: array[n_samples, d]}, "angles": [hue_deg, ...]}

This script writes the same numbers as a huescan store (one `layer_XXX.safetensors` per layer, tensor `acts`,
float32, plus `manifest.json`), so `huescan analyze` can reproduce the notebook offline.

SECURITY: loading a pickle runs arbitrary code from the file. Only convert pickles you made yourself or trust.
This script is the only part of huescan that touches pickle; huescan itself never does.

Usage:
    python3 -m venv scripts/.venv-convert && scripts/.venv-convert/bin/pip install joblib numpy
    scripts/.venv-convert/bin/python scripts/convert_joblib_scan.py qwen_full_scan.pkl runs/notebook/full_simple \
        --model-id Qwen/Qwen2.5-VL-3B-Instruct --stimuli-name full_simple

The layer keys of the pickle are kept as layer indices; the notebook does not record which hook point (HF
hidden_states index or block output) they are, so the manifest says so instead of guessing.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

FORMAT = "huescan-activations"
FORMAT_VERSION = 1


def safetensors_bytes(tensors, metadata):
    """Deterministic safetensors (sorted keys, header padded to 8 bytes), the same layout huescan writes."""
    import numpy as np

    header = {}
    if metadata:
        header["__metadata__"] = dict(sorted(metadata.items()))
    offset = 0
    blobs = []
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        nbytes = arr.nbytes
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        blobs.append(arr.tobytes())
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_atomic(path, data):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp.%d" % os.getpid())
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def convert(payload, out_dir, model_id, stimuli_name, source_sha256):
    import numpy as np

    if "layer_data" not in payload or "angles" not in payload:
        sys.exit("error: expected a dict with keys 'layer_data' and 'angles' (the seed notebook's format)")
    angles = np.asarray(payload["angles"], dtype=np.float64).ravel()
    if not np.all(np.isfinite(angles)):
        sys.exit("error: 'angles' contains NaN or Inf")
    n = angles.shape[0]
    os.makedirs(out_dir, exist_ok=True)
    layers = []
    d_model = None
    for key in sorted(payload["layer_data"], key=lambda k: int(k)):
        x = np.asarray(payload["layer_data"][key], dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != n:
            sys.exit("error: layer %s has shape %s, expected [%d, d] (one row per angle)" % (key, x.shape, n))
        if d_model is None:
            d_model = x.shape[1]
        elif x.shape[1] != d_model:
            sys.exit("error: layer %s has width %d, earlier layers %d" % (key, x.shape[1], d_model))
        bad = np.argwhere(~np.isfinite(x))
        if bad.size:
            sys.exit("error: layer %s has a non-finite value for sample %d" % (key, bad[0][0]))
        index = int(key)
        hook = "pickle.layer_%d" % index
        data = safetensors_bytes({"acts": x}, {"format": FORMAT, "hook": hook, "layer": str(index)})
        name = "layer_%03d.safetensors" % index
        write_atomic(os.path.join(out_dir, name), data)
        layers.append({"index": index, "hook": hook, "file": name, "shape": [n, int(x.shape[1])],
                       "sha256": hashlib.sha256(data).hexdigest()})
    samples = []
    for i, a in enumerate(angles):
        ident = "hue_%03d" % int(round(a)) if float(a).is_integer() else "hue_%g" % a
        if any(s["id"] == ident for s in samples):
            ident = "%s_v%d" % (ident, i)
        samples.append({"id": ident, "hue_deg": float(a)})
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": "convert_joblib_scan.py",
        "layer_convention": "unknown: layer keys copied from a joblib pickle of the seed notebook",
        "provenance": {
            "model_id": model_id,
            "model_revision": None,
            "model_config_sha256": None,
            "stimuli_name": stimuli_name,
            "stimuli_sha256": source_sha256,
            "pooling": "unknown",
            "settings": {"source": "joblib pickle"},
        },
        "dtype": "f32",
        "d_model": int(d_model or 0),
        "layers": layers,
        "samples": samples,
    }
    write_atomic(os.path.join(out_dir, "manifest.json"), (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pickle", help="the notebook's joblib file, e.g. qwen_full_scan.pkl (TRUSTED input only)")
    p.add_argument("out", help="store directory to write")
    p.add_argument("--model-id", default="unknown", help="model the activations came from")
    p.add_argument("--stimuli-name", default=None, help="stimulus-set name (default: the pickle's file name)")
    args = p.parse_args()
    import joblib

    with open(args.pickle, "rb") as f:
        source_sha256 = hashlib.sha256(f.read()).hexdigest()
    payload = joblib.load(args.pickle)
    name = args.stimuli_name or os.path.splitext(os.path.basename(args.pickle))[0]
    m = convert(payload, args.out, args.model_id, name, source_sha256)
    print("wrote %s: %d samples x %d layers (d=%d)" % (args.out, len(m["samples"]), len(m["layers"]), m["d_model"]))


if __name__ == "__main__":
    main()
