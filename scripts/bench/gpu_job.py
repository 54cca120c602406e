#!/usr/bin/env python3
"""The extraction job on one CUDA GPU, huescan vs transformers (sdpa), same stored tensors, one run.

    python3 scripts/bench/gpu_job.py --huescan target/cuda-release/bundle/huescan --out gpu_job.json

Written for the device machine scripts/gpu_check.sh runs on: its own python3 with torch and transformers (no
virtualenv, no network, no Rust toolchain), a huescan built by scripts/build_cuda_binary.sh.

  checkpoint  random-weight Qwen2.5-VL with the 3B's widths (text hidden 2048, 16/2 heads, MLP 11008, vocab
              151936 tied; vision hidden 1280, 16 heads, MLP 3420), 8 vision blocks (3 and 7 full attention) and
              2 decoder layers, written by transformers (f32) with the real Qwen tokenizer from the qwen-tiny
              fixture, so both sides build the real chat prompt (64 image tokens per 224x224 image).
  stimuli     192 and 12 flat 224x224 squares (simple-60's kind: HSV, s = v = 1, hues evenly spaced from 0),
              rendered by `huescan stimuli render` (--sizes).
  huescan     `huescan extract --device cuda --dtype D --batch-size B --layers all --pool image-mean`.
  transformers Qwen2_5_VLModel with sdpa attention in dtype D on cuda, output_hidden_states=True, each hidden
              state's mean over the image tokens in f32, the full prompt, batches of B.

Per dtype (f32, bf16) and batch (1 and --batch): each tool runs as one process per set, interleaved (huescan,
transformers, huescan, ...). `job_s` is the large set's process wall time (start-up, CUDA init, load, kernels'
JIT, the work, the store); `images_per_s` the marginal rate (192 - 12) / (wall192 - wall12), which cancels the
fixed costs (n/a when that difference is under a second). Parity: per hidden state max |huescan -
transformers| / max |transformers| of the large stores (f32 within 1e-4, bf16 within 1e-1, the parity tests'
tolerances). Results: JSON (--out) and markdown on stdout. `--device cpu --smoke` tries the script on a CPU.
"""

import argparse
import gzip
import inspect
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "qwen-tiny"
TOLERANCE = {"f32": 1e-4, "bf16": 1e-1}


def checkpoint(work, smoke=False):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = work / ("smoke" if smoke else "job-v8-d2")
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    torch.manual_seed(0)
    text = dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=16,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
        use_sliding_window=False, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    )
    vision = dict(
        depth=8, hidden_size=1280, hidden_act="silu", intermediate_size=3420, num_heads=16, in_channels=3,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=112,
        out_hidden_size=2048, fullatt_block_indexes=[3, 7],
    )
    if smoke:  # narrow widths, the same structure: only to try this script on a CPU
        text.update(hidden_size=256, intermediate_size=512, num_attention_heads=2)  # head_dim 128, as mrope wants
        vision.update(hidden_size=128, intermediate_size=256, num_heads=4, out_hidden_size=256)
    cfg = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    shutil.copy(FIXTURE / "model" / "preprocessor_config.json", out / "preprocessor_config.json")
    with gzip.open(FIXTURE / "tokenizer.json.gz", "rb") as f:
        (out / "tokenizer.json").write_bytes(f.read())
    return out


def stimuli(huescan, work, sizes):
    """Flat 224x224 HSV squares at full saturation and value, `n` hues evenly spaced from 0 (for 60: exactly
    stimuli/simple-60.toml)."""
    sets = {}
    for n in sizes:
        out, spec = work / f"stimuli-{n}", work / f"simple-{n}.toml"
        step = 360 / n
        spec.write_text(
            f'name = "simple-{n}"\ndescription = "flat 224x224 squares, {n} hues"\nkind = "flat-hsv"\nseed = 0\n'
            f"width = 224\nheight = 224\n\n[hues]\nstart = 0\nend = {360 - step:g}\nstep = {step:g}\n\n"
            "[flat-hsv]\nsaturation = 1.0\nvalue = 1.0\n"
        )
        if not (out / "stimuli.json").exists():
            subprocess.run([str(huescan), "--quiet", "stimuli", "render", str(spec), "--out", str(out)], check=True)
        sets[n] = out
    return sets


def chat_ids(n_image_tokens):
    ref = json.loads((FIXTURE / "tokenizer_reference.json").read_text())
    chat, pad = ref["chat_ids_unexpanded"], ref["image_pad_id"]
    i = chat.index(pad)
    return chat[:i] + [pad] * n_image_tokens + chat[i + 1:]


def hf_job(ckpt, stim_dir, batch, dtype, device, out):
    """The transformers script a user would write for the same store, timed inside its process."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import AutoImageProcessor, Qwen2_5_VLForConditionalGeneration

    t0 = time.perf_counter()
    dt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(ckpt, dtype=dt, attn_implementation="sdpa")
    model = model.to(device).eval()
    proc = AutoImageProcessor.from_pretrained(ckpt)
    accepts_mm = "mm_token_type_ids" in inspect.signature(model.model.forward).parameters
    files = [Path(stim_dir) / s["file"] for s in json.loads((Path(stim_dir) / "stimuli.json").read_text())["stimuli"]]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    load_s = time.perf_counter() - t0
    pooled = []
    t1 = time.perf_counter()
    with torch.inference_mode():
        for b0 in range(0, len(files), batch):
            imgs = [Image.open(f).convert("RGB") for f in files[b0:b0 + batch]]
            feats = proc(images=imgs, return_tensors="pt")
            n = int(feats["image_grid_thw"][0].prod()) // 4
            ids = torch.tensor([chat_ids(n)] * len(imgs), dtype=torch.long, device=device)
            image = ids == model.config.image_token_id
            extra = {"mm_token_type_ids": image.long()} if accepts_mm else {}
            outp = model.model(
                input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=feats["pixel_values"].to(device, dt),
                image_grid_thw=feats["image_grid_thw"].to(device), output_hidden_states=True, **extra,
            )
            w = image.unsqueeze(-1).float()
            pooled.append([((h.float() * w).sum(1) / w.sum(1)).cpu() for h in outp.hidden_states])
    sync()
    loop_s = time.perf_counter() - t1
    layers = [torch.cat([p[i] for p in pooled]) for i in range(len(pooled[0]))]
    save_file({f"layer_{i:03}": p.contiguous() for i, p in enumerate(layers)}, str(out))
    print(json.dumps({"load_s": load_s, "loop_s": loop_s, "images": len(files), "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"}))


def run(cmd):
    s = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - s
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r, wall


def huescan_run(huescan, ckpt, stim, batch, dtype, device, out):
    shutil.rmtree(out, ignore_errors=True)  # a store left there would be resumed, not recomputed
    _, wall = run([str(huescan), "--quiet", "extract", "--model", str(ckpt), "--stimuli", str(stim), "--out",
                   str(out), "--device", device, "--dtype", dtype, "--batch-size", str(batch), "--pool",
                   "image-mean", "--layers", "all"])
    return {"wall_s": wall}


def hf_run(ckpt, stim, batch, dtype, device, out):
    r, wall = run([sys.executable, __file__, "--hf-job", str(ckpt), str(stim), str(batch), dtype, device, str(out)])
    o = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
    return {"wall_s": wall, **o}


def read_huescan(out):
    from safetensors.numpy import load_file

    files = sorted(Path(out).rglob("layer_*.safetensors"))
    if not files:
        sys.exit(f"no layer_*.safetensors under {out}")
    return {f.stem: load_file(str(f))["acts"] for f in files}


def compare(ours, theirs_path):
    import numpy as np
    from safetensors.numpy import load_file

    theirs = load_file(str(theirs_path))
    return {k: float(np.abs(ours[k] - theirs[k]).max() / np.abs(theirs[k]).max()) for k in sorted(theirs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--huescan", default=str(ROOT / "target" / "cuda-release" / "bundle" / "huescan"))
    ap.add_argument("--work", default="/tmp/huescan-gpu-job")
    ap.add_argument("--batch", type=int, default=32, help="the default GPU batch of `huescan extract`")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--out", default="gpu_job.json")
    ap.add_argument("--sizes", default="12,192", help="the small and the large set; the rate is their difference")
    ap.add_argument("--device", default="cuda", help="`cpu` only to smoke-test this script without a GPU")
    ap.add_argument("--smoke", action="store_true", help="a narrow random model: tries the script, measures nothing")
    ap.add_argument("--hf-job", nargs=6, metavar=("CKPT", "STIMULI", "BATCH", "DTYPE", "DEVICE", "OUT"))
    a = ap.parse_args()
    if a.hf_job:
        ckpt, stim, batch, dtype, device, out = a.hf_job
        return hf_job(ckpt, stim, int(batch), dtype, device, out)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_job.py: torch sees no CUDA GPU here; this benchmark runs on a GPU machine only")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = checkpoint(work, a.smoke)
    small, large = (int(n) for n in a.sizes.split(","))
    sets = stimuli(a.huescan, work, (small, large))
    setup_s = time.perf_counter() - t0
    rows = []
    for dtype in a.dtypes.split(","):
        for batch in sorted({1, a.batch}):
            res = {"huescan": {}, "transformers": {}}
            for n in (small, large):  # interleaved: huescan, transformers, huescan, transformers
                hs_out, hf_out = work / f"hs-{dtype}-{batch}-{n}", work / f"hf-{dtype}-{batch}-{n}.safetensors"
                res["huescan"][n] = huescan_run(a.huescan, ckpt, sets[n], batch, dtype, a.device, hs_out)
                res["transformers"][n] = hf_run(ckpt, sets[n], batch, dtype, a.device, hf_out)
            err = compare(read_huescan(hs_out), hf_out)
            row = {"dtype": dtype, "batch": batch, "parity_rel_err": err, "tolerance": TOLERANCE.get(dtype)}
            for tool, r in res.items():
                extra_s = r[large]["wall_s"] - r[small]["wall_s"]
                # Below ~1 s the difference is start-up jitter, not work: no rate rather than a wrong one.
                rate = (large - small) / extra_s if extra_s > 1.0 else None
                row[tool] = {"job_s": r[large]["wall_s"], "small_set_wall_s": r[small]["wall_s"], "images_per_s": rate}
                if tool == "transformers":
                    row[tool]["in_process_loop_images_per_s"] = large / r[large]["loop_s"]
                    row["gpu"] = r[large]["gpu"]
            rates = row["huescan"]["images_per_s"], row["transformers"]["images_per_s"]
            row["ratio"] = rates[0] / rates[1] if None not in rates else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"setup_s": setup_s, "sizes": [small, large], "device": a.device, "rows": rows, "torch": torch.__version__,
              "transformers": __import__("transformers").__version__}
    Path(a.out).write_text(json.dumps(result, indent=2))
    print(f"\nGPU: {rows[0]['gpu'] if rows else '?'}; torch {result['torch']}, transformers {result['transformers']}")
    print("| dtype | batch | huescan images/s | transformers images/s | ratio | huescan job s | transformers job s "
          "| max parity err |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        worst = max(r["parity_rel_err"].values())
        ok = "" if r["tolerance"] is None or worst <= r["tolerance"] else " (OVER TOLERANCE)"
        num = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        print(f"| {r['dtype']} | {r['batch']} | {num(r['huescan']['images_per_s'], '.1f')} | "
              f"{num(r['transformers']['images_per_s'], '.1f')} | {num(r['ratio'], '.2f')}x | "
              f"{r['huescan']['job_s']:.1f} | {r['transformers']['job_s']:.1f} | {worst:.2e}{ok} |")


if __name__ == "__main__":
    sys.exit(main())
