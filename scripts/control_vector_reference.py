#!/usr/bin/env python3
"""Reference llama.cpp control vector, written by llama.cpp's own `gguf` Python package the way repeng exports.

Regenerate the fixture with:

    python3 scripts/control_vector_reference.py   # makes scripts/.venv-gguf (gguf, numpy) on first run

It writes tests/fixtures/control_vector_reference.gguf, read by `tests/it/steer_layers.rs`: two F32 directions,
`direction.1` and `direction.2` (block outputs 1 and 2, i.e. huescan layer indices 2 and 3), with
`controlvector.model_hint = "fake-resid"` and `controlvector.layer_count = 2`. huescan must parse it exactly and
write byte-identical bytes for the same vectors (without its own provenance keys).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / 'scripts' / '.venv-gguf'
OUT = ROOT / 'tests' / 'fixtures' / 'control_vector_reference.gguf'

# Values with exact float32 representations, so the Rust test can state them literally.
DIRECTIONS = {
    1: [0.5, -1.25, 2.0, 0.0, 3.75],
    2: [-0.125, 1.0, -2.5, 4.0, 0.25],
}


def ensure_venv():
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not (VENV / 'bin' / 'python').exists():
        subprocess.check_call([sys.executable, '-m', 'venv', str(VENV)])
        subprocess.check_call([str(VENV / 'bin' / 'pip'), 'install', '-q', 'gguf==0.19.0', 'numpy==2.4.6'])
    os.execv(str(VENV / 'bin' / 'python'), [str(VENV / 'bin' / 'python'), __file__, *sys.argv[1:]])


def main():
    ensure_venv()
    import gguf
    import numpy as np

    # As repeng's ControlVector.export_gguf.
    arch = 'controlvector'
    writer = gguf.GGUFWriter(str(OUT), arch)
    writer.add_string(f'{arch}.model_hint', 'fake-resid')
    writer.add_uint32(f'{arch}.layer_count', len(DIRECTIONS))
    for layer, values in DIRECTIONS.items():
        writer.add_tensor(f'direction.{layer}', np.array(values, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f'wrote {OUT} ({OUT.stat().st_size} bytes)')


if __name__ == '__main__':
    main()
