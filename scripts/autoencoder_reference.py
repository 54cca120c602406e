#!/usr/bin/env python3
"""Independent reference for huescan's colour autoencoder (seed 003's ColorMLP), written from the maths.

Regenerate the golden file with:

    python3 scripts/autoencoder_reference.py   # makes scripts/.venv-autoencoder (numpy) on first run

It writes tests/fixtures/autoencoder_reference.json, read by `src/model/autoencoder/tests.rs`:
- the training colours, made with Python's `colorsys` (not huescan's HSV code) and the seed's hold-out rule
  (`isbetween_cyclic(h, teal=150/360, blue=240/360)`, ends included);
- initial weights (PyTorch's nn.Linear default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), from numpy's RNG);
- the loss of every epoch and the final weights of 500 full-batch Adam steps (PyTorch's update rule), with
  the forward pass and its gradients written out by hand in float64;
- the bottleneck and output of the final weights on the training colours.

PyTorch itself is not used: its PyPI wheel pulls in gigabytes of CUDA libraries. The seed's model is small
enough that a hand-derived float64 implementation is an exact reference for huescan's float32 candle code.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / 'scripts' / '.venv-autoencoder'
OUT = ROOT / 'tests' / 'fixtures' / 'autoencoder_reference.json'

SEED = 0
EPOCHS = 500
LR = 1e-3
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
NORM_EPS = 1e-8
TEAL, BLUE = 150 / 360, 240 / 360
LAYERS = [('encoder.0', 3, 16), ('encoder.2', 16, 2), ('decoder.0', 2, 16), ('decoder.2', 16, 3)]


def ensure_venv():
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not (VENV / 'bin' / 'python').exists():
        subprocess.check_call([sys.executable, '-m', 'venv', str(VENV)])
        subprocess.check_call([str(VENV / 'bin' / 'pip'), 'install', '-q', 'numpy==2.4.6'])
    os.execv(str(VENV / 'bin' / 'python'), [str(VENV / 'bin' / 'python'), __file__, *sys.argv[1:]])


def training_colours():
    import colorsys

    import numpy as np

    rows, hues = [], []
    for k in range(360):
        h = k / 360
        # isbetween_cyclic(h, teal, blue) with lower <= upper, atol 1e-8: held out.
        if TEAL - 1e-8 <= h <= BLUE + 1e-8:
            continue
        for v in (0.9, 1.0):
            rows.append(colorsys.hsv_to_rgb(h, 1.0, v))
            hues.append(k)
    # The seed turns the colours into a float32 tensor.
    return np.array(rows, dtype=np.float32).astype(np.float64), hues


def init_weights(np):
    rng = np.random.default_rng(SEED)
    params = {}
    for name, d_in, d_out in LAYERS:
        bound = 1 / np.sqrt(d_in)
        params[f'{name}.weight'] = rng.uniform(-bound, bound, (d_out, d_in)).astype(np.float32).astype(np.float64)
        params[f'{name}.bias'] = rng.uniform(-bound, bound, d_out).astype(np.float32).astype(np.float64)
    return params


def forward(np, p, x):
    a1 = x @ p['encoder.0.weight'].T + p['encoder.0.bias']
    h1 = np.maximum(a1, 0)
    z0 = h1 @ p['encoder.2.weight'].T + p['encoder.2.bias']
    n = np.sqrt((z0**2).sum(axis=1, keepdims=True))
    z = z0 / (n + NORM_EPS)
    a2 = z @ p['decoder.0.weight'].T + p['decoder.0.bias']
    h2 = np.maximum(a2, 0)
    a3 = h2 @ p['decoder.2.weight'].T + p['decoder.2.bias']
    y = 1 / (1 + np.exp(-a3))
    return dict(x=x, a1=a1, h1=h1, z0=z0, n=n, z=z, a2=a2, h2=h2, y=y)


def loss_and_grads(np, p, x):
    """MSE(y, x) over all elements, and its gradient with respect to every parameter."""
    f = forward(np, p, x)
    loss = ((f['y'] - x) ** 2).mean()
    dy = 2 * (f['y'] - x) / x.size
    da3 = dy * f['y'] * (1 - f['y'])
    g = {'decoder.2.weight': da3.T @ f['h2'], 'decoder.2.bias': da3.sum(0)}
    da2 = (da3 @ p['decoder.2.weight']) * (f['a2'] > 0)
    g['decoder.0.weight'] = da2.T @ f['z']
    g['decoder.0.bias'] = da2.sum(0)
    dz = da2 @ p['decoder.0.weight']
    # z = z0 / (|z0| + eps): dz0 = dz / (n + eps) - z0 (dz . z0) / ((n + eps)^2 n)
    ne = f['n'] + NORM_EPS
    dz0 = dz / ne - f['z0'] * (dz * f['z0']).sum(axis=1, keepdims=True) / (ne**2 * f['n'])
    g['encoder.2.weight'] = dz0.T @ f['h1']
    g['encoder.2.bias'] = dz0.sum(0)
    da1 = (dz0 @ p['encoder.2.weight']) * (f['a1'] > 0)
    g['encoder.0.weight'] = da1.T @ x
    g['encoder.0.bias'] = da1.sum(0)
    return loss, g


def check_gradients(np, p, x, h=1e-6):
    """The hand-written gradients must match central differences (else the reference is wrong)."""
    _, g = loss_and_grads(np, p, x)
    for k in p:
        for idx in [(0,) * p[k].ndim, tuple(d - 1 for d in p[k].shape)]:
            q = {kk: vv.copy() for kk, vv in p.items()}
            q[k][idx] += h
            up, _ = loss_and_grads(np, q, x)
            q[k][idx] -= 2 * h
            down, _ = loss_and_grads(np, q, x)
            numeric = (up - down) / (2 * h)
            assert abs(numeric - g[k][idx]) <= 1e-6 * max(1.0, abs(numeric)), (k, idx, numeric, g[k][idx])


def main():
    ensure_venv()
    import numpy as np

    x, hues = training_colours()
    p = init_weights(np)
    check_gradients(np, p, x)
    init = {k: v.copy() for k, v in p.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    losses = []
    for t in range(1, EPOCHS + 1):
        loss, g = loss_and_grads(np, p, x)
        losses.append(loss)
        for k in p:
            # torch.optim.Adam, no weight decay.
            m[k] = BETA1 * m[k] + (1 - BETA1) * g[k]
            v[k] = BETA2 * v[k] + (1 - BETA2) * g[k] ** 2
            denom = np.sqrt(v[k]) / np.sqrt(1 - BETA2**t) + ADAM_EPS
            p[k] = p[k] - (LR / (1 - BETA1**t)) * m[k] / denom
    f = forward(np, p, x)
    final_loss = ((f['y'] - x) ** 2).mean()
    tolist = lambda a: np.asarray(a).tolist()  # noqa: E731
    doc = {
        'about': 'written by scripts/autoencoder_reference.py; float64 reference of the seed-003 ColorMLP',
        'seed': SEED,
        'epochs': EPOCHS,
        'lr': LR,
        'hues_deg': hues,
        'rgb': tolist(x),
        'init': {k: tolist(a) for k, a in init.items()},
        'losses': losses,
        'final_loss': final_loss,
        'final': {k: tolist(a) for k, a in p.items()},
        'bottleneck': tolist(f['z']),
        'output': tolist(f['y']),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(',', ':')) + '\n')
    print(f'wrote {OUT}: {len(hues)} colours, loss {losses[0]:.4f} -> {final_loss:.5f}')


if __name__ == '__main__':
    main()
