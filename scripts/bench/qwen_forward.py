#!/usr/bin/env python3
"""Forward time of huescan's Qwen2.5-VL runner vs transformers on CPU, same checkpoint, same inputs, one run.

    python3 scripts/bench/qwen_forward.py [--reps 5] [--skip-realwidth] [--batch 4] [--device cuda --dtype bf16]

Uses (and if needed creates) the virtualenv of scripts/make_qwen_fixture.py (scripts/.venv-qwen, pinned torch +
transformers). Two checkpoints:
  fixture    tests/fixtures/qwen-tiny/model with its sample b (126x182 image, 36 tokens)
  realwidth  a random-weight model with the 3B's widths (text hidden 2048, head_dim 128, 16/2 heads, MLP 11008,
             vocab 151936 tied; vision hidden 1280, 16 heads, MLP 3420) but 2 decoder layers and 2 vision blocks
             (one windowed, one full), written once to target/qwen-bench/realwidth (~2.2 GB), fed a 448x448 image
             (1024 patches, 256 image tokens) in the chat prompt.
One timed forward, on both sides: vision tower + decoder with every hidden state returned + last-token logits
(transformers: output_hidden_states=True, logits_to_keep=1, sdpa attention, float32, inference_mode). Each side
runs in its own process (load, one warm-up, REPS timed runs; medians of wall and process CPU time; peak RSS
of that process).
A second table is throughput: a 224x224 flat-hue image (the simple-60 stimuli's size: 256 patches, 64 image
tokens) repeated --batch times in one forward, on the fixture and on realwidth, images/s on both sides.
A third table divides each forward's FLOPs (counted from the config) by its time and compares that with the
runner's own rate on one large f32 GEMM, timed in the same process.
With --device cuda (both sides on the GPU; huescan built with `--features cuda`) or a --dtype other than f32,
only the realwidth rows run (the tiny fixture would measure launch overhead); peak RSS is then host memory; GPU times synchronise the device before each clock read.
This GPU mode was written without a GPU to try it on: check it the first time one is lent.
Results go to stdout as markdown tables and to target/qwen-bench/results.json.
"""

import argparse
import json
import os
import resource
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


def realwidth_checkpoint():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    out = WORK / "realwidth"
    if (out / "config.json").exists():
        return out
    torch.manual_seed(0)
    text = dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=2, num_attention_heads=16,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6,
        use_sliding_window=False, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    )
    vision = dict(
        depth=2, hidden_size=1280, hidden_act="silu", intermediate_size=3420, num_heads=16, in_channels=3,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=112,
        out_hidden_size=2048, fullatt_block_indexes=[1],
    )
    cfg = Qwen2_5_VLConfig(
        text_config=text, vision_config=vision, image_token_id=151655, video_token_id=151656,
        vision_start_token_id=151652, vision_end_token_id=151653, tie_word_embeddings=True,
    )
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    pre = json.loads((FIXTURE / "model" / "preprocessor_config.json").read_text())
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return out


def realwidth_inputs(ckpt):
    from safetensors.torch import save_file
    from PIL import Image
    from make_qwen_fixture import image_processor

    path = WORK / "realwidth_inputs.safetensors"
    if path.exists():
        return path
    y, x = np.mgrid[0:448, 0:448]
    img = Image.fromarray(np.stack([x * 255 // 447, y * 255 // 447, (x + y) * 255 // 894], -1).astype(np.uint8))
    feats = image_processor()(images=[img], return_tensors="pt")
    n = int(feats["image_grid_thw"].prod()) // 4
    ref = json.loads((FIXTURE / "tokenizer_reference.json").read_text())
    chat = ref["chat_ids_unexpanded"]
    pad = ref["image_pad_id"]
    i = chat.index(pad)
    ids = chat[:i] + [pad] * n + chat[i + 1:]
    save_file(
        {
            "pixel_values": feats["pixel_values"].float().contiguous(),
            "image_grid_thw": feats["image_grid_thw"].long().contiguous(),
            "input_ids": torch.tensor([ids], dtype=torch.long),
        },
        str(path),
    )
    return path


def flat_inputs(kind):
    """A 224x224 flat orange image (hue 30) through the HF processor, with the chat ids of the checkpoint."""
    from safetensors.torch import save_file
    from PIL import Image
    from make_qwen_fixture import image_processor

    path = WORK / f"{kind}_flat224_inputs.safetensors"
    if path.exists():
        return path
    img = Image.new("RGB", (224, 224), (255, 128, 0))
    feats = image_processor()(images=[img], return_tensors="pt")
    n = int(feats["image_grid_thw"].prod()) // 4
    if kind == "fixture":
        ref = json.loads((FIXTURE / "reference.json").read_text())["a"]["prompt_ids"]
        pad = json.loads((FIXTURE / "model" / "config.json").read_text())["image_token_id"]
    else:
        ref = json.loads((FIXTURE / "tokenizer_reference.json").read_text())["chat_ids_unexpanded"]
        pad = json.loads((FIXTURE / "tokenizer_reference.json").read_text())["image_pad_id"]
    first = ref.index(pad)
    last = len(ref) - ref[::-1].index(pad)
    ids = ref[:first] + [pad] * n + ref[last:]
    save_file(
        {
            "pixel_values": feats["pixel_values"].float().contiguous(),
            "image_grid_thw": feats["image_grid_thw"].long().contiguous(),
            "input_ids": torch.tensor([ids], dtype=torch.long),
        },
        str(path),
    )
    return path


def hf_worker(ckpt, inputs, prefix, reps, batch=1, device="cpu", dtype="f32"):
    """Runs in its own process so load time and peak RSS are its own."""
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLForConditionalGeneration

    t0 = time.perf_counter()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        ckpt, dtype=TORCH_DTYPES[dtype], attn_implementation="sdpa"
    ).to(device)
    model.eval()
    sync(device)
    load_s = time.perf_counter() - t0
    t = load_file(inputs)
    ids = t[prefix + "input_ids"].repeat(batch, 1).to(device)
    kw = dict(
        input_ids=ids,
        pixel_values=t[prefix + "pixel_values"].repeat(batch, 1).to(device, TORCH_DTYPES[dtype]),
        image_grid_thw=t[prefix + "image_grid_thw"].repeat(batch, 1).to(device),
        mm_token_type_ids=(ids == model.config.image_token_id).long(),
        output_hidden_states=True,
        logits_to_keep=1,
    )
    times, cpu = [], []
    with torch.inference_mode():
        model(**kw)
        sync(device)
        for _ in range(reps):
            s, c = time.perf_counter(), time.process_time()
            model(**kw)
            sync(device)
            times.append(time.perf_counter() - s)
            cpu.append(time.process_time() - c)
        vision, vision_cpu = [], []
        for _ in range(reps):
            s, c = time.perf_counter(), time.process_time()
            model.model.get_image_features(kw["pixel_values"], kw["image_grid_thw"])
            sync(device)
            vision.append(time.perf_counter() - s)
            vision_cpu.append(time.process_time() - c)
    print(json.dumps({
        "runner": f"transformers {__import__('transformers').__version__} sdpa",
        "checkpoint": str(ckpt), "dtype": dtype, "device": device, "seq_len": ids.shape[1], "batch": batch,
        "patches": t[prefix + "pixel_values"].shape[0], "load_s": load_s, "times_s": times,
        "median_s": sorted(times)[len(times) // 2], "cpu_s": cpu, "median_cpu_s": sorted(cpu)[len(cpu) // 2],
        "vision_median_s": sorted(vision)[len(vision) // 2],
        "vision_median_cpu_s": sorted(vision_cpu)[len(vision_cpu) // 2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "gemm_shape": list(GEMM_SHAPE), "gemm_gflops": gemm_gflops(reps, device, dtype),
    }))


GEMM_SHAPE = (1024, 1280, 3420)  # the vision MLP's projection over 1024 patches; the Rust bench times the same


TORCH_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gemm_gflops(reps, device="cpu", dtype="f32"):
    kw = dict(device=device, dtype=TORCH_DTYPES[dtype])
    a, b = torch.randn(GEMM_SHAPE[0], GEMM_SHAPE[1], **kw), torch.randn(GEMM_SHAPE[1], GEMM_SHAPE[2], **kw)
    a @ b
    sync(device)
    times = []
    for _ in range(max(reps, 3)):
        s = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - s)
    m, k, n = GEMM_SHAPE
    return 2 * m * k * n / sorted(times)[len(times) // 2] / 1e9


def forward_gflop(ckpt, seq, patches, batch):
    """Multiply-add FLOPs of one forward (matmuls and attention products; elementwise work is left out), from
    the checkpoint's config: the yardstick that turns seconds into GFLOP/s for both runners alike."""
    cfg = json.loads((Path(ckpt) / "config.json").read_text())
    t, v = cfg.get("text_config", cfg), cfg["vision_config"]
    h, inter, nl, hd = t["hidden_size"], t["intermediate_size"], t["num_hidden_layers"], t["hidden_size"] // t["num_attention_heads"]
    kv = t["num_key_value_heads"] * hd
    vh, vi, merge = v["hidden_size"], v["intermediate_size"], v["spatial_merge_size"] ** 2
    patch_in = v.get("in_channels", 3) * v["temporal_patch_size"] * v["patch_size"] ** 2
    window = min(patches, (v["window_size"] // v["patch_size"]) ** 2)
    full = set(v["fullatt_block_indexes"])
    p, f = patches, 0.0
    f += p * patch_in * vh
    for blk in range(v["depth"]):
        f += p * vh * 4 * vh + 3 * p * vh * vi
        f += 2 * p * (p if blk in full else window) * vh
    f += (p // merge) * (merge * vh) ** 2 + (p // merge) * merge * vh * v["out_hidden_size"]
    f += nl * (seq * h * (2 * h + 2 * kv) + 3 * seq * h * inter + 2 * seq * seq * h)
    f += h * t["vocab_size"]  # last-token logits
    return 2 * f * batch / 1e9


def last_json(text):
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


def run_pair(name, ckpt, inputs, prefix, reps, batch=1, device="cpu", dtype="f32"):
    hf = subprocess.run(
        [sys.executable, __file__, "--hf-worker", str(ckpt), str(inputs), prefix, str(reps), str(batch), device, dtype],
        check=True, capture_output=True, text=True,
    )
    env = dict(os.environ, CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
    args = [] if name == "fixture" else [str(ckpt), str(inputs), str(reps), dtype, str(batch), device]
    features = ["--features", "cuda"] if device.startswith("cuda") else []
    rs = subprocess.run(
        ["cargo", "bench", "--quiet", *features, "--bench", "qwen_forward", "--", *args],
        check=True, capture_output=True, text=True, cwd=ROOT, env=env,
    )
    h, o = last_json(hf.stdout), last_json(rs.stdout)
    return {"name": name, "gflop": forward_gflop(ckpt, o["seq_len"], o["patches"], batch), "transformers": h,
            "huescan": o}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-realwidth", action="store_true")
    ap.add_argument("--batch", type=int, default=4, help="images per forward in the throughput table")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (both runners)")
    ap.add_argument("--dtype", default="f32", choices=sorted(TORCH_DTYPES))
    ap.add_argument("--hf-worker", nargs=7, metavar=("CKPT", "INPUTS", "PREFIX", "REPS", "BATCH", "DEVICE", "DTYPE"))
    a = ap.parse_args()
    if a.hf_worker:
        ckpt, inputs, prefix, reps, batch, device, dtype = a.hf_worker
        return hf_worker(ckpt, inputs, "" if prefix == "-" else prefix, int(reps), int(batch), device, dtype)
    WORK.mkdir(parents=True, exist_ok=True)
    on = dict(device=a.device, dtype=a.dtype)
    results, throughput = [], []
    if a.device == "cpu" and a.dtype == "f32":  # the Rust side runs the fixture's own inputs in f32 on the CPU
        results.append(run_pair("fixture", FIXTURE / "model", FIXTURE / "reference.safetensors", "b.", a.reps, **on))
        throughput.append(
            run_pair("fixture-flat224", FIXTURE / "model", flat_inputs("fixture"), "-", a.reps, a.batch, **on)
        )
    if not a.skip_realwidth:
        ckpt = realwidth_checkpoint()
        results.append(run_pair("realwidth", ckpt, realwidth_inputs(ckpt), "-", a.reps, **on))
        throughput.append(run_pair("realwidth-flat224", ckpt, flat_inputs("realwidth"), "-", a.reps, a.batch, **on))
    (WORK / "results.json").write_text(json.dumps(results + throughput, indent=1))
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo; nproc"], capture_output=True, text=True)
    print(f"CPU: {' / '.join(cpu.stdout.split(chr(10))[:2])}")
    print(f"load average before: {os.getloadavg()[0]:.1f} (wall times on a shared machine swing with it)")
    print("| checkpoint | seq | patches | wall s: transformers / huescan | CPU s: transformers / huescan | "
          "speed-up wall / CPU | vision tower wall s (CPU s) | peak RSS MiB: transformers / huescan |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        h, o = r["transformers"], r["huescan"]
        # Our CPU clock ticks every 10 ms: below that a ratio means nothing.
        cpu_ratio = f"{h['median_cpu_s'] / o['median_cpu_s']:.2f}x" if o["median_cpu_s"] >= 0.05 else "n/a"
        print(
            f"| {r['name']} | {o['seq_len']} | {o['patches']} | {h['median_s']:.3f} / {o['median_s']:.3f} | "
            f"{h['median_cpu_s']:.3f} / {o['median_cpu_s']:.3f} | {h['median_s'] / o['median_s']:.2f}x / "
            f"{cpu_ratio} | {h['vision_median_s']:.3f} ({h['vision_median_cpu_s']:.2f}) / "
            f"{o['vision_median_s']:.3f} ({o['vision_median_cpu_s']:.2f}) | {h['peak_rss_mib']:.0f} / {o['peak_rss_mib']:.0f} |"
        )

    print()
    print(f"| checkpoint, 224x224 flat image | batch | seq | images/s: transformers / huescan | speed-up | "
          "CPU s per image: transformers / huescan | peak RSS MiB: transformers / huescan |")
    print("|---|---|---|---|---|---|---|")
    for r in throughput:
        h, o = r["transformers"], r["huescan"]
        b = o["batch"]
        print(
            f"| {r['name']} | {b} | {o['seq_len']} | {b / h['median_s']:.2f} / {b / o['median_s']:.2f} | "
            f"{h['median_s'] / o['median_s']:.2f}x | {h['median_cpu_s'] / b:.3f} / {o['median_cpu_s'] / b:.3f} | "
            f"{h['peak_rss_mib']:.0f} / {o['peak_rss_mib']:.0f} |"
        )

    # Where the time goes: each runner's forward rate against its own single-GEMM rate. A runner at a high
    # fraction of its GEMM ceiling can only get faster through a faster GEMM or fewer FLOPs.
    print()
    print(f"| forward | GFLOP | GFLOP/s: transformers / huescan | GEMM {'x'.join(map(str, GEMM_SHAPE))} GFLOP/s: "
          "transformers / huescan | forward as % of own GEMM rate: transformers / huescan |")
    print("|---|---|---|---|---|")
    for r in results + throughput:
        h, o, g = r["transformers"], r["huescan"], r["gflop"]
        hr, orate = g / h["median_s"], g / o["median_s"]
        print(
            f"| {r['name']} | {g:.1f} | {hr:.1f} / {orate:.1f} | {h['gemm_gflops']:.1f} / {o['gemm_gflops']:.1f} | "
            f"{100 * hr / h['gemm_gflops']:.0f} % / {100 * orate / o['gemm_gflops']:.0f} % |"
        )


if __name__ == "__main__":
    main()

