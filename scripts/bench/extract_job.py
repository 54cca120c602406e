#!/usr/bin/env python3
"""The extraction job, huescan vs transformers on CPU: images/s over a stimulus set, same stored tensors.

    python3 scripts/bench/extract_job.py [--reps 3] [--images 16] [--batch 8] [--quick] [--skip-vision]

One run on this machine, both tools interleaved (A B A B ...) so that load from other processes hits both alike:

  checkpoint  a random-weight Qwen2.5-VL with the 3B's widths (text hidden 2048, head_dim 128, 16/2 heads, MLP
              11008, vocab 151936 tied; vision hidden 1280, 16 heads, MLP 3420), 8 vision blocks of which blocks
              3 and 7 attend over the whole image (the 3B's fullatt_block_indexes [7, 15, 23, 31] scaled to 8
              blocks) and 2 decoder layers, written once by transformers to target/qwen-bench/job-v8-d2 with the
              real Qwen tokenizer (tests/fixtures/qwen-tiny/tokenizer.json.gz), so both tools build the real chat
              prompt (15 tokens, 64 image tokens, 17 tokens of question and template).
  stimuli     --images flat 224x224 HSV squares (hues evenly spaced; the simple-60 spec's kind and size)
              rendered by `huescan stimuli render`.
  huescan     `huescan extract` (release build, --layers all = the 3 hidden states, --pool image-mean, f32,
              RAYON_NUM_THREADS=2) at --batch-size 1 and at --batch (8, the default CPU batch on a machine with
              >= 16 GiB available); a fresh store every run.
  transformers the same stored tensors from a plain script: Qwen2_5_VLModel (no LM head) with sdpa attention,
              float32, torch threads 2, output_hidden_states=True, the mean of each hidden state over the image
              tokens, the full chat prompt (transformers has no prompt cut), batches of the same sizes.

Each timed run is one process doing the whole job; the first round is a warm-up (page cache, allocator) and
is not counted, medians over --reps rounds. Two numbers per run: `loop` images/s (reading and preprocessing
the images, the forwards, pooling, the copy to the host: what grows with the set) and `job` wall seconds of
the whole process (start-up, model load and store writes included). The vision tower alone at batch 1 is timed
in separate processes, also interleaved (huescan: `cargo bench --bench qwen_forward`; transformers:
get_image_features), medians of --reps calls after a warm-up.

Parity: the pooled tensors of the transformers run and of each huescan store are compared per layer, max
|huescan - transformers| / max |transformers| <= 1e-4 (the parity tests' tolerance); the two huescan stores
(batch 1 and batch 8) against each other as well. Results: markdown on stdout, JSON in
target/qwen-bench/extract_job.json. --quick: 4 images, 1 round after the warm-up (a smoke test, not a measurement).
"""

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from make_qwen_fixture import ensure_venv  # noqa: E402  (re-executes inside the venv when needed)

ensure_venv()

import numpy as np  # noqa: E402
import torch  # noqa: E402

WORK = ROOT / "target" / "qwen-bench"
FIXTURE = ROOT / "tests" / "fixtures" / "qwen-tiny"
CKPT = WORK / "job-v8-d2"
HUESCAN = ROOT / "target" / "release" / "huescan"
# --cargo-profile dev-opt: the dev profile with the huescan crate at opt-level 3 (dependencies are at 3 there
# already, with debug assertions), for a machine where a cold release build would not finish in time.
CARGO_PROFILES = {
    "release": (["--release"], ["cargo", "bench"], ROOT / "target" / "release" / "huescan"),
    "dev-opt": (["--config", "profile.dev.package.huescan.opt-level=3"],
                ["cargo", "bench", "--profile", "dev", "--config", "profile.dev.package.huescan.opt-level=3"],
                ROOT / "target" / "debug" / "huescan"),
}
BENCH_CMD = CARGO_PROFILES["release"][1]
THREADS = 2
TOLERANCE = 1e-4
# (m, k, n) of the job's matmuls at batch 1 (vision tower over 256 patches, decoder over ~80-96 tokens) and at
# batch 8, each timed alone in both runtimes as the ceiling their forwards are measured against.
GEMM_SHAPES = [(256, 1280, 3420), (256, 1280, 3840), (96, 2048, 11008), (2048, 1280, 3420), (768, 2048, 11008)]


def env_threads():
    return dict(os.environ, RAYON_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS),
                MKL_NUM_THREADS=str(THREADS))


def checkpoint():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    if (CKPT / "config.json").exists() and (CKPT / "tokenizer.json").exists():
        return CKPT
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
    cfg = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32)
    model.save_pretrained(CKPT)
    pre = json.loads((FIXTURE / "model" / "preprocessor_config.json").read_text())
    (CKPT / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    with gzip.open(FIXTURE / "tokenizer.json.gz", "rb") as f:
        (CKPT / "tokenizer.json").write_bytes(f.read())
    return CKPT


def stimuli(n):
    out = WORK / f"job-stimuli-{n}"
    if (out / "stimuli.json").exists():
        return out
    step = 360.0 / n
    spec = WORK / f"job-stimuli-{n}.toml"
    spec.write_text(
        f'name = "job-{n}"\ndescription = "flat 224x224 squares, {n} hues"\nkind = "flat-hsv"\nseed = 0\n'
        f"width = 224\nheight = 224\n\n[hues]\nstart = 0\nend = {360.0 - step}\nstep = {step}\n\n"
        "[flat-hsv]\nsaturation = 1.0\nvalue = 1.0\n"
    )
    subprocess.run([str(HUESCAN), "--quiet", "stimuli", "render", str(spec), "--out", str(out)], check=True)
    return out


def chat_ids(n_image_tokens):
    ref = json.loads((FIXTURE / "tokenizer_reference.json").read_text())
    chat, pad = ref["chat_ids_unexpanded"], ref["image_pad_id"]
    i = chat.index(pad)
    return chat[:i] + [pad] * n_image_tokens + chat[i + 1:]


def hf_load():
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.set_num_threads(THREADS)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(CKPT, dtype=torch.float32, attn_implementation="sdpa")
    return model.eval()


def hf_job(stim_dir, batch, out):
    """The transformers script a user would write for the same store: hidden states pooled over image tokens."""
    from PIL import Image
    from safetensors.torch import save_file
    from make_qwen_fixture import image_processor

    t0 = time.perf_counter()
    model = hf_load()
    proc = image_processor()
    files = [Path(stim_dir) / s["file"] for s in json.loads((Path(stim_dir) / "stimuli.json").read_text())["stimuli"]]
    load_s = time.perf_counter() - t0
    pooled = None
    t1 = time.perf_counter()
    with torch.inference_mode():
        for b0 in range(0, len(files), batch):
            imgs = [Image.open(f).convert("RGB") for f in files[b0:b0 + batch]]
            feats = proc(images=imgs, return_tensors="pt")
            n = int(feats["image_grid_thw"][0].prod()) // 4
            ids = torch.tensor([chat_ids(n)] * len(imgs), dtype=torch.long)
            image = ids == model.config.image_token_id
            outp = model.model(
                input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=feats["pixel_values"],
                image_grid_thw=feats["image_grid_thw"], mm_token_type_ids=image.long(), output_hidden_states=True,
                use_cache=False,
            )
            w = image.unsqueeze(-1).float()
            means = [(h * w).sum(1) / w.sum(1) for h in outp.hidden_states]
            pooled = [m.clone() for m in means] if pooled is None else [torch.cat([p, m]) for p, m in zip(pooled, means)]
    loop_s = time.perf_counter() - t1
    save_file({f"layer_{i:03}": p.float().contiguous() for i, p in enumerate(pooled)}, out)
    print(json.dumps({"load_s": load_s, "loop_s": loop_s, "images": len(files), "threads": torch.get_num_threads()}))


def hf_vision(inputs, reps):
    """The vision tower alone at batch 1, and torch's rate on the job's GEMM shapes."""
    from safetensors.torch import load_file

    model = hf_load()
    t = load_file(inputs)
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):
            s = time.perf_counter()
            model.model.get_image_features(t["pixel_values"], t["image_grid_thw"])
            if i:
                times.append(time.perf_counter() - s)
        gemm = {}
        for m, k, n in GEMM_SHAPES:
            a, w = torch.randn(m, k), torch.randn(n, k)
            torch.nn.functional.linear(a, w)
            ts = []
            for _ in range(5):
                s = time.perf_counter()
                torch.nn.functional.linear(a, w)
                ts.append(time.perf_counter() - s)
            gemm[f"{m}x{k}x{n}"] = 2 * m * k * n / statistics.median(ts) / 1e9
    print(json.dumps({"vision_s": statistics.median(times), "vision_times_s": times, "gemm_gflops": gemm}))


def vision_inputs(stim_dir):
    from PIL import Image
    from safetensors.torch import save_file
    from make_qwen_fixture import image_processor

    path = WORK / "job_vision_inputs.safetensors"
    first = json.loads((Path(stim_dir) / "stimuli.json").read_text())["stimuli"][0]["file"]
    feats = image_processor()(images=[Image.open(Path(stim_dir) / first).convert("RGB")], return_tensors="pt")
    n = int(feats["image_grid_thw"].prod()) // 4
    save_file({
        "pixel_values": feats["pixel_values"].float().contiguous(),
        "image_grid_thw": feats["image_grid_thw"].long().contiguous(),
        "input_ids": torch.tensor([chat_ids(n)], dtype=torch.long),
    }, str(path))
    return path


def timed(cmd, extra_env=None, **kw):
    s = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(env_threads(), **(extra_env or {})), **kw)
    wall = time.perf_counter() - s
    if r.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return r, wall


BATCH_LINE = re.compile(r"batch done.*?images (\d+).*?seconds ([0-9.eE+-]+)")


def plain_env(plain):
    """huescan's CPU fast paths off (candle's ops only): `HUESCAN_PLAIN_KERNELS`, src/model/nn/kernels.rs."""
    return {"HUESCAN_PLAIN_KERNELS": "1" if plain else "0"}


def run_huescan(stim, batch, out, plain=False):
    shutil.rmtree(out, ignore_errors=True)  # a store left there would be resumed, not recomputed
    cmd = [str(HUESCAN), "--quiet", "extract", "--model", str(CKPT), "--stimuli", str(stim), "--out", str(out),
           "--batch-size", str(batch), "--pool", "image-mean", "--dtype", "f32", "--layers", "all"]
    env = dict(env_threads(), RUST_LOG="huescan::extract=debug", **plain_env(plain))
    s = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - s
    if r.returncode != 0:
        sys.exit(f"huescan extract failed ({r.returncode}):\n{r.stderr[-4000:]}")
    lines = BATCH_LINE.findall(r.stderr)
    if not lines:
        sys.exit(f"huescan extract printed no `batch done` timing lines:\n{r.stderr[-2000:]}")
    return {"job_s": wall, "loop_s": sum(float(s) for _, s in lines), "images": sum(int(n) for n, _ in lines)}


def run_hf(stim, batch, out):
    r, wall = timed([sys.executable, __file__, "--hf-job", str(stim), str(batch), str(out)])
    o = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
    return {"job_s": wall, "loop_s": o["loop_s"], "images": o["images"], "load_s": o["load_s"]}


def huescan_vision(inputs, reps, plain=False):
    r, _ = timed([*BENCH_CMD, "--quiet", "--locked", "--bench", "qwen_forward", "--", str(CKPT), str(inputs),
                  str(reps), "f32", "1", "cpu"], extra_env=plain_env(plain), cwd=ROOT)
    o = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
    return {"vision_s": o["vision_median_s"], "gemm_gflops": o.get("gemm_shapes_gflops", {})}


def read_store(out):
    from safetensors.numpy import load_file

    files = sorted(Path(out).glob("layer_*.safetensors"))
    return {f.stem: load_file(str(f))["acts"] for f in files}


def compare(a, b):
    """Per layer max |a - b| / max |b|."""
    return {k: float(np.abs(a[k] - b[k]).max() / np.abs(b[k]).max()) for k in sorted(b)}


def job_flops(n_images, prefix_tokens=15, image_tokens=64, batch_tokens=96):
    """Multiply-add FLOPs of the job per image from the config: vision tower, then the decoder. transformers
    runs the whole prompt of every image; huescan cuts it after the image and runs the prefix before the image
    once per run (its keys and values serve every image), so its decoder work per image is the image tokens
    attending over prefix + image, plus the prefix's own work shared by the images. Elementwise work is left
    out; attention counts one product of (queries x keys x width) per layer, as before."""
    cfg = json.loads((CKPT / "config.json").read_text())
    t, v = cfg.get("text_config", cfg), cfg["vision_config"]
    h, inter, nl = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"]
    kv = t["num_key_value_heads"] * (h // t["num_attention_heads"])
    vh, vi, merge = v["hidden_size"], v["intermediate_size"], v["spatial_merge_size"] ** 2
    p = 256
    window = min(p, (v["window_size"] // v["patch_size"]) ** 2)
    f = p * 3 * v["temporal_patch_size"] * v["patch_size"] ** 2 * vh
    for blk in range(v["depth"]):
        f += p * vh * 4 * vh + 3 * p * vh * vi + 2 * p * (p if blk in v["fullatt_block_indexes"] else window) * vh
    f += (p // merge) * (merge * vh) ** 2 + (p // merge) * merge * vh * v["out_hidden_size"]
    dec = lambda q, keys: nl * (q * h * (2 * h + 2 * kv) + 3 * q * h * inter + q * keys * h)  # noqa: E731
    seen = prefix_tokens + image_tokens
    huescan = dec(image_tokens, seen) + dec(prefix_tokens, prefix_tokens) / n_images
    return {"vision": 2 * f / 1e9, "huescan": 2 * (f + huescan) / 1e9,
            "transformers": 2 * (f + dec(batch_tokens, batch_tokens)) / 1e9}


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3, help="timed rounds after the warm-up round")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8, help="the default-batch setting (8 on this machine)")
    ap.add_argument("--quick", action="store_true", help="4 images, 1 round: a smoke test")
    ap.add_argument("--skip-vision", action="store_true")
    ap.add_argument("--no-build", action="store_true", help="use the built huescan binary as it is")
    ap.add_argument("--cargo-profile", choices=sorted(CARGO_PROFILES), default="release")
    ap.add_argument("--plain-kernels", action="store_true",
                    help="also run huescan with HUESCAN_PLAIN_KERNELS=1 (candle's ops only), interleaved")
    ap.add_argument("--hf-job", nargs=3, metavar=("STIMULI", "BATCH", "OUT"))
    ap.add_argument("--hf-vision", nargs=2, metavar=("INPUTS", "REPS"))
    a = ap.parse_args()
    if a.hf_job:
        return hf_job(a.hf_job[0], int(a.hf_job[1]), a.hf_job[2])
    if a.hf_vision:
        return hf_vision(a.hf_vision[0], int(a.hf_vision[1]))
    if a.quick:
        a.images, a.reps = 4, 1
    global HUESCAN, BENCH_CMD
    build_flags, BENCH_CMD, HUESCAN = CARGO_PROFILES[a.cargo_profile]
    WORK.mkdir(parents=True, exist_ok=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", *build_flags, "--locked", "--quiet", "--bin", "huescan"], cwd=ROOT,
                       check=True)
        if not a.skip_vision:
            subprocess.run([*BENCH_CMD, "--locked", "--quiet", "--no-run", "--bench", "qwen_forward"], cwd=ROOT,
                           check=True)
    checkpoint()
    stim = stimuli(a.images)
    load_before = os.getloadavg()
    batches = [1, a.batch]
    tools = ["huescan", "transformers"] + (["huescan-plain"] if a.plain_kernels else [])
    runs = {(tool, b): [] for tool in tools for b in batches}
    vision = {tool: [] for tool in tools}
    vin = vision_inputs(stim)
    order = []
    for rnd in range(a.reps + 1):  # round 0 is the warm-up
        for b in batches:
            for tool in tools:  # A B, A B, ...: the same load for both
                out = WORK / f"job-out-{tool}-b{b}"
                if tool == "transformers":
                    r = run_hf(stim, b, out.with_suffix(".st"))
                else:
                    r = run_huescan(stim, b, out, plain=tool == "huescan-plain")
                order.append(f"{tool} b{b}")
                if rnd:
                    runs[(tool, b)].append(r)
                print(f"round {rnd} {tool} batch {b}: loop {r['loop_s']:.2f} s, job {r['job_s']:.2f} s",
                      file=sys.stderr)
        if not a.skip_vision and rnd:  # each process warms up on its own
            for tool in tools:
                if tool != "transformers":
                    v = huescan_vision(vin, 3, plain=tool == "huescan-plain")
                else:
                    r, _ = timed([sys.executable, __file__, "--hf-vision", str(vin), "3"])
                    v = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
                order.append(f"{tool} vision")
                if rnd:
                    vision[tool].append(v)
    load_after = os.getloadavg()

    from safetensors.numpy import load_file

    hf1 = load_file(str(WORK / "job-out-transformers-b1.st"))
    hfb = load_file(str(WORK / f"job-out-transformers-b{a.batch}.st"))
    hs1, hsb = read_store(WORK / "job-out-huescan-b1"), read_store(WORK / f"job-out-huescan-b{a.batch}")
    parity = {
        "huescan b1 vs transformers b1": compare(hs1, hf1),
        f"huescan b{a.batch} vs transformers b{a.batch}": compare(hsb, hfb),
        f"huescan b{a.batch} vs huescan b1": compare(hsb, hs1),
        f"transformers b{a.batch} vs transformers b1": compare(hfb, hf1),
    }
    if a.plain_kernels:
        parity["huescan-plain b1 vs transformers b1"] = compare(read_store(WORK / "job-out-huescan-plain-b1"), hf1)
    flops = job_flops(a.images)
    res = {"cargo_profile": a.cargo_profile, "images": a.images, "reps": a.reps, "batches": batches, "threads": THREADS, "order": order,
           "load_before": load_before, "load_after": load_after, "parity": parity, "flops_per_image": flops,
           "runs": {f"{t} b{b}": v for (t, b), v in runs.items()}, "vision": vision}
    (WORK / "extract_job.json").write_text(json.dumps(res, indent=1))

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; nproc"],
                         capture_output=True, text=True).stdout.split("\n")
    print(f"huescan: {HUESCAN.relative_to(ROOT)} (--cargo-profile {a.cargo_profile})")
    print(f"CPU:{cpu[0]}, {cpu[1]} cores; threads {THREADS} per tool; {a.images} flat 224x224 images; medians of "
          f"{a.reps} rounds after a warm-up, tools interleaved; load average {load_before[0]:.1f} before, "
          f"{load_after[0]:.1f} after")
    print()
    print("| batch | loop images/s: transformers / huescan | speed-up | job wall s: transformers / huescan | "
          "forward GFLOP/s (% of own GEMM rate): transformers / huescan |")
    print("|---|---|---|---|---|")

    def ceiling(tool, b):
        """The runtime's own GEMM rate at the job's shapes for batch b (mean over the shapes of that batch)."""
        rows = vision.get(tool) or []
        if not rows:
            return float("nan")
        g = rows[-1]["gemm_gflops"]
        keys = [f"{m}x{k}x{n}" for m, k, n in (GEMM_SHAPES[:3] if b == 1 else GEMM_SHAPES[3:])]
        vals = [g[k] if tool == "transformers" else g[k]["linear"] for k in keys if k in g]
        return statistics.mean(vals) if vals else float("nan")

    gemm_hs = vision["huescan"][-1]["gemm_gflops"] if vision["huescan"] else {}
    for tool in [t for t in tools if t != "transformers"]:
        for b in batches:
            h, o = runs[("transformers", b)], runs[(tool, b)]
            hr, orate = a.images / med(h, "loop_s"), a.images / med(o, "loop_s")
            gh, go = hr * flops["transformers"], orate * flops["huescan"]
            ch, co = ceiling("transformers", b), ceiling(tool, b)
            print(f"| {b}{'' if tool == 'huescan' else ' (' + tool + ')'} | {hr:.2f} / {orate:.2f} | "
                  f"{orate / hr:.2f}x | {med(h, 'job_s'):.1f} / {med(o, 'job_s'):.1f} | "
                  f"{gh:.0f} ({100 * gh / ch:.0f} %) / {go:.0f} ({100 * go / co:.0f} %) |")
    if not a.skip_vision:
        hv = med(vision["transformers"], "vision_s")
        print()
        print(f"Vision tower alone, batch 1 (one 224x224 image, 256 patches, {flops['vision']:.1f} GFLOP): "
              f"transformers {hv:.3f} s ({flops['vision'] / hv:.0f} GFLOP/s)")
        for tool in [t for t in tools if t != "transformers"]:
            ov = med(vision[tool], "vision_s")
            print(f"- {tool} {ov:.3f} s ({flops['vision'] / ov:.0f} GFLOP/s), speed-up {hv / ov:.2f}x")
        print()
        print("| GEMM m x k x n (x · Wᵀ) | GFLOP/s: torch / huescan Linear / candle matmul |")
        print("|---|---|")
        nan = {"candle": float("nan"), "linear": float("nan")}
        for k, v in vision["transformers"][-1]["gemm_gflops"].items():
            o = gemm_hs.get(k, nan)
            print(f"| {k} | {v:.0f} / {o['linear']:.0f} / {o['candle']:.0f} |")
    print()
    print(f"Parity (max |a - b| / max |b| per stored layer, tolerance {TOLERANCE:g}):")
    ok = True
    for name, d in parity.items():
        worst = max(d.values())
        ok &= worst <= TOLERANCE
        print(f"- {name}: " + ", ".join(f"{k} {v:.1e}" for k, v in d.items()) + (" ok" if worst <= TOLERANCE else " FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
