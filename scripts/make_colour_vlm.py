#!/usr/bin/env python3
"""Train the known-answer colour-naming Qwen2.5-VL committed in tests/fixtures/qwen-colour/.

    cargo build --bin huescan          # the stimuli are rendered by huescan itself
    python3 scripts/make_colour_vlm.py [--huescan target/debug/huescan]

Every Qwen2.5-VL result from the random-weight fixtures means nothing about hue; this model has *learned* to
answer huescan's colour question, so huescan's scan and in-model steering can be checked against a known answer
on the real architecture and code paths (image processor, windowed vision tower, M-RoPE decoder, tokenizer, chat
prompt, colour-word logits, generation).

What it does (seeded, float32, CPU, 2 threads; on a quiet 2-core machine the whole run took 167 s wall, 112 s of
it the 500 training steps, with an optimised huescan rendering; it reproduced every committed file byte for byte):
  1. builds a small byte-level BPE `tokenizer.json` with the `tokenizers` library: the chat template's words and
     huescan's nine colour words (red orange yellow green cyan blue purple magenta pink, each one token, also
     capitalised and with a leading space) plus Qwen2.5-VL's special tokens in Qwen's order after the BPE
     vocabulary, so huescan's chat prompt, colour-word lookup and decoding run on it as on a hub checkpoint;
  2. renders training images with huescan's own renderer (`huescan stimuli render`): flat HSV squares at
     0.5-degree steps and textured images (seeds 1.., never seed 0, which `wild-360` uses) with the hue slice
     HOLD_OUT removed, so the slice is never seen in training;
  3. trains the real `transformers` `Qwen2_5_VLForConditionalGeneration` (small config below: 4 decoder
     layers, 4 vision blocks of which 1 and 3 are full attention and 0 and 2 windowed) to answer with the
     nearest colour word followed by <|im_end|>;
  4. reports accuracy on huescan's `simple-60` and `wild-360` (seed 0, rendered by huescan), held-in and held-out;
  5. writes the checkpoint and transformers' reference outputs for the Rust parity test.

The answer is scored right when it is the colour word nearest the hue, or, within BOUNDARY_BAND degrees of the
midpoint between two neighbouring words, either of the two (naming a hue on a category boundary is a coin toss).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PINS = [
    "torch==2.15.0",
    "transformers==5.23.0",
    "pillow==12.3.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "tokenizers==0.23.3",
]
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "scripts" / ".venv-qwen"
OUT = ROOT / "tests" / "fixtures" / "qwen-colour"
SEED = 20261202


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.check_call(["python3.11", "-m", "venv", str(VENV)])
    subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", *PINS])
    os.execv(str(py), [str(py), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # noqa: E402

# huescan's DEFAULT_COLOUR_WORDS (src/steer/readout.rs): the words and the hues it scores them at.
WORDS = [("red", 0.0), ("orange", 30.0), ("yellow", 60.0), ("green", 120.0), ("cyan", 180.0), ("blue", 240.0),
         ("purple", 275.0), ("magenta", 300.0), ("pink", 330.0)]
# The slice never shown in training (inclusive, degrees): between cyan and blue, holding no word's own hue and
# none of the notebook's steering pairs (0, 120, 240), like seed 003's teal-blue gap but 30 degrees wide.
HOLD_OUT = (195.0, 225.0)
BOUNDARY_BAND = 5.0
# huescan's prompt (src/model/qwen2_5_vl/prompt.rs).
QUESTION = "What colour is this image? Answer with one word."
SYSTEM = "You are a helpful assistant."
# Qwen2.5-VL's added tokens, in Qwen's order (151643.. in the real vocabulary; here right after the BPE ones).
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
# Qwen2's pre-tokenizer split (tokenizer.json of the hub checkpoints).
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")
BPE_VOCAB = 480
# Embedding rows past the tokenizer, as the hub checkpoints have (151936 rows for 151665 tokens).
VOCAB = 512

TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=2048,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    sliding_window=2048,
    max_window_layers=4,
    tie_word_embeddings=False,
    initializer_range=0.02,
    attention_dropout=0.0,
)
# head_dim 16 -> 8 frequency slots, T|H|W = [2,3,3] like the real [16,24,24] over 64.
MROPE = [2, 3, 3]
ROPE_THETA = 1000000.0
# 224x224 stimuli are resized to 112x112 (max_pixels): 8x8 patches of 14, 4x4 = 16 merged image tokens; a 56 px
# window is 2x2 merged tokens, so the windowed blocks really see four windows.
VISION = dict(
    depth=4,
    hidden_size=48,
    hidden_act="silu",
    intermediate_size=96,
    num_heads=3,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    tokens_per_second=2,
    window_size=56,
    out_hidden_size=64,
    fullatt_block_indexes=[1, 3],
    initializer_range=0.02,
)
SIDE = 112
PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": SIDE * SIDE,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2_5_VLProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
}
STEPS = 500
BATCH = 32
LR = 3e-3
TRAIN_TEXTURE_SEEDS = [1, 2, 3, 4]
# The steered forward of the reference: decoder block STEER_BLOCK's output at the image tokens, += alpha * v.
STEER_BLOCK = 1
STEER_ALPHA = 1.0
N_NEW = 4


def hue_diff(a, b):
    return (b - a + 180.0) % 360.0 - 180.0


def in_hold_out(h):
    lo, hi = HOLD_OUT
    return lo <= h % 360.0 <= hi


def nearest_word(h):
    return min(range(len(WORDS)), key=lambda i: abs(hue_diff(WORDS[i][1], h)))


def acceptable_words(h):
    """The nearest word, and its neighbour too when `h` is within BOUNDARY_BAND of their midpoint."""
    d = sorted((abs(hue_diff(w[1], h)), i) for i, w in enumerate(WORDS))
    ok = {d[0][1]}
    if d[1][0] - d[0][0] <= 2 * BOUNDARY_BAND:
        ok.add(d[1][1])
    return ok


# ---------------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    words = [w for w, _ in WORDS]
    corpus = ["system\n" + SYSTEM, "user\n" + QUESTION, "assistant\n"] * 50
    for w in words:
        corpus += [w, w.capitalize(), " " + w, " " + w.capitalize(), f"It is {w}.", f"{w.capitalize()}."] * 20
    trainer = trainers.BpeTrainer(vocab_size=BPE_VOCAB, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(SPECIALS)
    for w in words:
        for v in (w, w.capitalize(), " " + w, " " + w.capitalize()):
            ids = tok.encode(v, add_special_tokens=False).ids
            assert len(ids) == 1, f"colour word {v!r} is {len(ids)} tokens; raise BPE_VOCAB"
    assert tok.get_vocab_size(with_added_tokens=True) <= VOCAB
    return tok


def chat_text():
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n<|im_start|>assistant\n")


# ------------------------------------------------------------------------------------------------------ stimuli
def render(huescan, spec_text, name, root):
    spec = root / f"{name}.toml"
    spec.write_text(spec_text)
    out = root / name
    if not (out / "stimuli.json").exists():
        subprocess.check_call([str(huescan), "--quiet", "stimuli", "render", str(spec), "--out", str(out)])
    return load_set(out)


def load_set(out):
    man = json.loads((out / "stimuli.json").read_text())
    items = man["stimuli"]
    imgs, hues = [], []
    for it in items:
        img = Image.open(out / it["file"]).convert("RGB")
        imgs.append(np.asarray(img.resize((SIDE, SIDE), resample=Image.BICUBIC)))
        hues.append(float(it["hue_deg"]))
    return np.stack(imgs), np.array(hues)


def flat_spec(name, step, sat, val, hold_out=True):
    ho = f"\n[hold-out]\nfrom = {HOLD_OUT[0]}\nto = {HOLD_OUT[1]}\n" if hold_out else ""
    return (f'name = "{name}"\ndescription = "training"\nkind = "flat-hsv"\nseed = 0\nwidth = 224\nheight = 224\n'
            f"\n[hues]\nstart = 0\nend = {360 - step}\nstep = {step}\n{ho}\n"
            f"[flat-hsv]\nsaturation = {sat}\nvalue = {val}\n")


def textured_spec(name, seed, variants):
    return (f'name = "{name}"\ndescription = "training"\nkind = "textured"\nseed = {seed}\nwidth = 224\n'
            f"height = 224\nvariants = {variants}\n\n[hues]\nstart = 0\nend = 359\nstep = 1\n\n"
            f"[hold-out]\nfrom = {HOLD_OUT[0]}\nto = {HOLD_OUT[1]}\n\n"
            '[textured]\nfamilies = ["value-noise", "stripes", "checks", "blobs", "objects"]\n'
            "hue-jitter-deg = 8.0\n")


def bundled_set(huescan, name, root):
    out = root / name
    if not (out / "stimuli.json").exists():
        subprocess.check_call([str(huescan), "--quiet", "stimuli", "render", name, "--out", str(out)])
    return load_set(out)


def patchify(imgs):
    """uint8 `[n, 112, 112, 3]` (already resized) -> pixel_values `[n * 64, 1176]` as the Qwen2-VL processor
    lays them out (merge blocks in raster order; columns channel, frame, row, column). Checked against the
    transformers processor in `check_patchify`."""
    p, m, tp = 14, 2, 2
    x = torch.from_numpy(imgs).float() * PREPROCESSOR["rescale_factor"]
    mean = torch.tensor(PREPROCESSOR["image_mean"])
    std = torch.tensor(PREPROCESSOR["image_std"])
    x = ((x - mean) / std).permute(0, 3, 1, 2)  # n, c, h, w
    n, c, h, w = x.shape
    gh, gw = h // p, w // p
    x = x[:, None].expand(n, tp, c, h, w)
    x = x.reshape(n, tp, c, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(n * gh * gw, c * tp * p * p).contiguous()


def image_processor():
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil_mod

    kw = {k: v for k, v in PREPROCESSOR.items() if k not in ("image_processor_type", "processor_class")}
    kw["size"] = {"shortest_edge": kw.pop("min_pixels"), "longest_edge": kw.pop("max_pixels")}
    return pil_mod.Qwen2VLImageProcessorPil(**kw)


def check_patchify(root):
    proc = image_processor()
    man = json.loads((root / "simple-60" / "stimuli.json").read_text())
    items = (man["stimuli"])[:3]
    for it in items:
        img = Image.open(root / "simple-60" / it["file"]).convert("RGB")
        ref = proc(images=[img], return_tensors="pt")
        mine = patchify(np.asarray(img.resize((SIDE, SIDE), resample=Image.BICUBIC))[None])
        assert ref["image_grid_thw"].tolist() == [[1, 8, 8]], ref["image_grid_thw"]
        assert torch.allclose(ref["pixel_values"].float(), mine, atol=1e-5), "patchify differs from transformers"


# -------------------------------------------------------------------------------------------------------- model
def build_model(ids):
    torch.manual_seed(SEED)
    text = dict(TEXT, vocab_size=VOCAB, bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    text["rope_parameters"] = {"rope_type": "default", "mrope_section": MROPE, "rope_theta": ROPE_THETA}
    cfg = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=VISION,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    return Qwen2_5_VLForConditionalGeneration._from_config(cfg, attn_implementation="eager", dtype=torch.float32)


def batch_inputs(model, prompt, pixel_values, n):
    ids = torch.tensor([prompt] * n, dtype=torch.long)
    grid = torch.tensor([[1, SIDE // 14, SIDE // 14]] * n, dtype=torch.long)
    mm = (ids == model.config.image_token_id).long()
    return dict(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid, attention_mask=torch.ones_like(ids),
                mm_token_type_ids=mm)


def answer_logits(model, prompt, imgs, chunk=64):
    out = []
    with torch.no_grad():
        for s in range(0, len(imgs), chunk):
            part = imgs[s:s + chunk]
            o = model(**batch_inputs(model, prompt, patchify(part), len(part)))
            out.append(o.logits[:, -1].float())
    return torch.cat(out)


def accuracy(model, prompt, word_ids, imgs, hues):
    pred = answer_logits(model, prompt, imgs).argmax(-1).tolist()
    by_id = {t: i for i, t in enumerate(word_ids)}
    res = {"held_in": [0, 0], "held_out": [0, 0]}
    for p, h in zip(pred, hues):
        k = "held_out" if in_hold_out(h) else "held_in"
        res[k][1] += 1
        res[k][0] += int(by_id.get(p, -1) in acceptable_words(h))
    return {k: {"right": r, "of": n, "accuracy": (r / n if n else None)} for k, (r, n) in res.items()}


def train(model, prompt, word_ids, im_end, sets):
    imgs = np.concatenate([s[0] for s in sets])
    hues = np.concatenate([s[1] for s in sets])
    assert not any(in_hold_out(h) for h in hues), "a held-out hue reached the training set"
    labels = torch.tensor([word_ids[nearest_word(h)] for h in hues])
    is_flat = np.concatenate([np.full(len(s[1]), k == 0) for k, s in enumerate(sets)])
    flat_idx, tex_idx = np.flatnonzero(is_flat), np.flatnonzero(~is_flat)
    rng = np.random.default_rng(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.1)
    n_prompt = len(prompt)
    full = prompt + [0, im_end]
    model.train()
    t0 = time.time()
    for step in range(STEPS):
        # A quarter flat squares, the rest textures: flat colour is easy, textures are what generalisation needs.
        b = np.concatenate([rng.choice(flat_idx, BATCH // 4), rng.choice(tex_idx, BATCH - BATCH // 4)])
        inputs = batch_inputs(model, full, patchify(imgs[b]), len(b))
        inputs["input_ids"][:, n_prompt] = labels[b]
        # Logits of the two answer positions only: the LM head over every position is most of a step's cost.
        hidden = model.model(**inputs).last_hidden_state
        logits = model.lm_head(hidden[:, n_prompt - 1:n_prompt + 1])
        loss = torch.nn.functional.cross_entropy(logits[:, 0], labels[b]) + \
            torch.nn.functional.cross_entropy(logits[:, 1], torch.full((len(b),), im_end))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:5d} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    return time.time() - t0


# ---------------------------------------------------------------------------------------------------- references
def steered(model, v, positions, alpha):
    """Wraps decoder block STEER_BLOCK to add alpha * v at `positions` of the prompt (prefill only)."""
    layer = model.model.language_model.layers[STEER_BLOCK]
    orig = layer.forward

    def forward(*args, **kwargs):
        out = orig(*args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
        if hidden.shape[1] > max(positions):
            mask = torch.zeros(hidden.shape[1], dtype=hidden.dtype)
            mask[positions] = 1.0
            hidden = hidden + alpha * mask[None, :, None] * v
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    return layer, orig, forward


def record_references(model, prompt, tok, word_ids, simple, wild, meta):
    """Greedy answers, colour-word probabilities and hidden states for a few images, and one steered forward."""
    tensors = {}
    picks = {"simple_0": simple[0][0], "simple_120": simple[0][20], "simple_240": simple[0][40],
             "wild_75": wild[0][75], "wild_300": wild[0][300]}
    hues = {"simple_0": 0.0, "simple_120": 120.0, "simple_240": 240.0, "wild_75": 75.0, "wild_300": 300.0}
    eos = [tok.token_to_id("<|im_end|>"), tok.token_to_id("<|endoftext|>")]
    image_pos = [i for i, t in enumerate(prompt) if t == model.config.image_token_id]
    for key, img in picks.items():
        Image.fromarray(img).save(OUT / f"image_{key}.png")
        inputs = batch_inputs(model, prompt, patchify(img[None]), 1)
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=N_NEW, repetition_penalty=1.0,
                                 top_k=None, top_p=None, eos_token_id=eos, pad_token_id=eos[1])
        new = gen[0, len(prompt):].tolist()
        probs = torch.softmax(out.logits[0, -1].double(), -1)
        tensors[f"{key}.pixel_values"] = inputs["pixel_values"].contiguous()
        tensors[f"{key}.input_ids"] = inputs["input_ids"].contiguous()
        tensors[f"{key}.hidden_states"] = torch.stack([h[0] for h in out.hidden_states]).float().contiguous()
        tensors[f"{key}.last_logits"] = out.logits[0, -1].float().contiguous()
        tensors[f"{key}.generated"] = torch.tensor(new, dtype=torch.int64)
        meta["samples"][key] = {
            "image": f"image_{key}.png", "hue_deg": hues[key], "generated_ids": new,
            "answer": tok.decode(new, skip_special_tokens=True),
            "word_probs": {w: float(probs[t]) for (w, _), t in zip(WORDS, word_ids)},
        }
    # One steered forward: the image tokens of a blue square pushed along (red centroid - blue centroid) at the
    # output of decoder block STEER_BLOCK, the difference of the two images' image-token means there.
    h_red = tensors["simple_0.hidden_states"][STEER_BLOCK + 1, image_pos].mean(0)
    h_blue = tensors["simple_240.hidden_states"][STEER_BLOCK + 1, image_pos].mean(0)
    v = (h_red - h_blue).contiguous()
    inputs = batch_inputs(model, prompt, tensors["simple_240.pixel_values"], 1)
    layer, orig, forward = steered(model, v, image_pos, STEER_ALPHA)
    layer.forward = forward
    try:
        with torch.no_grad():
            out = model(**inputs, output_hidden_states=True)
            gen = model.generate(**inputs, do_sample=False, max_new_tokens=N_NEW, repetition_penalty=1.0,
                                 top_k=None, top_p=None, eos_token_id=eos, pad_token_id=eos[1])
    finally:
        layer.forward = orig
    new = gen[0, len(prompt):].tolist()
    tensors["steer.vector"] = v
    tensors["steer.hidden_states"] = torch.stack([h[0] for h in out.hidden_states]).float().contiguous()
    tensors["steer.last_logits"] = out.logits[0, -1].float().contiguous()
    tensors["steer.generated"] = torch.tensor(new, dtype=torch.int64)
    meta["steering"] = {
        "sample": "simple_240", "block": STEER_BLOCK, "hook_point": f"blocks.{STEER_BLOCK}.hook_resid_post",
        "alpha": STEER_ALPHA, "positions": "image tokens", "generated_ids": new,
        "answer": tok.decode(new, skip_special_tokens=True),
        "vector": "mean image-token hidden state of simple_0 minus simple_240 at that point",
    }
    save_file(tensors, str(OUT / "reference.safetensors"), metadata={"generator": "scripts/make_colour_vlm.py"})


def write_checkpoint(model, tok, ids):
    model.save_pretrained(OUT, safe_serialization=True)
    for f in ("generation_config.json",):
        (OUT / f).unlink(missing_ok=True)
    (OUT / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    (OUT / "generation_config.json").write_text(json.dumps({
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"], "do_sample": False, "repetition_penalty": 1.0,
        "transformers_version": transformers.__version__,
    }, indent=2) + "\n")
    tok.save(str(OUT / "tokenizer.json"), pretty=False)
    (OUT / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "model_max_length": TEXT["max_position_embeddings"], "clean_up_tokenization_spaces": False,
        "errors": "replace", "split_special_tokens": False,
    }, indent=2) + "\n")


def main():
    global OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--huescan", default=str(ROOT / "target" / "debug" / "huescan"))
    ap.add_argument("--work", default=None, help="keep rendered stimuli here (default: a temporary folder)")
    ap.add_argument("--out", default=str(OUT), help="checkpoint folder (default: the committed fixture)")
    args = ap.parse_args()
    OUT = Path(args.out)
    huescan = Path(args.huescan)
    if not huescan.exists():
        sys.exit(f"{huescan} not found: run `cargo build --bin huescan` first (the stimuli are huescan's own)")
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="colour-vlm-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    simple = bundled_set(huescan, "simple-60", work)
    wild = bundled_set(huescan, "wild-360", work)
    check_patchify(work)
    sets = [render(huescan, flat_spec("train-flat", 0.5, 1.0, 1.0), "train-flat", work)]
    for seed in TRAIN_TEXTURE_SEEDS:
        sets.append(render(huescan, textured_spec(f"train-tex-{seed}", seed, 1), f"train-tex-{seed}", work))
    print(f"rendered {sum(len(s[1]) for s in sets)} training images in {time.time() - t0:.0f} s", flush=True)

    tok = build_tokenizer()
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    prompt_unexpanded = tok.encode(chat_text(), add_special_tokens=False).ids
    n_img = (SIDE // 28) ** 2
    prompt = []
    for t in prompt_unexpanded:
        prompt += [t] * (n_img if t == ids["<|image_pad|>"] else 1)
    word_ids = [tok.encode(w, add_special_tokens=False).ids[0] for w, _ in WORDS]

    model = build_model(ids)
    train_s = train(model, prompt, word_ids, ids["<|im_end|>"], sets)
    acc = {"simple-60": accuracy(model, prompt, word_ids, *simple), "wild-360": accuracy(model, prompt, word_ids, *wild),
           "training": accuracy(model, prompt, word_ids, np.concatenate([s[0] for s in sets]),
                                np.concatenate([s[1] for s in sets]))}
    print(json.dumps(acc, indent=1))
    write_checkpoint(model, tok, ids)
    meta = {
        "generator": "scripts/make_colour_vlm.py", "seed": SEED, "hold_out_deg": list(HOLD_OUT),
        "boundary_band_deg": BOUNDARY_BAND, "words": [w for w, _ in WORDS], "word_ids": word_ids,
        "prompt_ids": prompt, "accuracy": acc, "steps": STEPS, "batch": BATCH,
        "train_images": int(sum(len(s[1]) for s in sets)), "train_seconds_2_threads": round(train_s),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__},
        "samples": {},
    }
    record_references(model, prompt, tok, word_ids, simple, wild, meta)
    meta.pop("train_seconds_2_threads")  # wall time is not reproducible; printed instead
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"trained in {train_s:.0f} s; total {time.time() - t0:.0f} s; wrote {OUT}")


if __name__ == "__main__":
    main()
