"""How much the int8 graph's calibration matters: one ensemble of trained models, exported once, quantized with each
of ONNX Runtime's calibration methods and sample sizes (faces from the training split), scored on the validation
split against the float32 graph (ages as reported: whole years when the first model has ``round_ages``, or with
``--round-ages``).

    python -m benchmarks.studies.int8_calibration RUN_A/model RUN_B/model RUN_C/model --split-file RUN_A/split.json --round-ages
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import read_split, split_parser

VARIANTS = (("minmax", 256, {}), ("minmax", 1024, {}), ("minmax", 1024, {"CalibMovingAverage": True}), ("percentile", 1024, {}), ("entropy", 512, {}))


def main() -> None:
    p = split_parser(__doc__, split="val")
    p.add_argument("models", nargs="+", help="model dirs (run/model); several give an ensemble")
    p.add_argument("--round-ages", action="store_true", help="score whole-year ages whatever the models' setting")
    args = p.parse_args()
    records, split = read_split(args)
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from faceage.data.images import load_image
    from faceage.inference.preprocess import calibration_batch
    from faceage.models.export import export_onnx
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.age_model import load_model
    from faceage.models.ages import reported_age
    from faceage.models.ensemble import AgeEnsemble

    members = [load_model(m) for m in args.models]
    model = (members[0] if len(members) == 1 else AgeEnsemble(members, tta_flip=False)).eval()
    round_ages = args.round_ages or model.config.get("round_ages", False)
    idx = split[args.split]
    ages = np.array([records[i].age for i in idx], float)
    x = np.stack([preprocess_chip(load_image(records[i].path), model.input_config) for i in idx])
    train = [records[i].path for i in split["train"]]

    def score(path: Path) -> str:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        pred = reported_age(np.concatenate([session.run(["age"], {"images": x[i : i + 64]})[0] for i in range(0, len(x), 64)]), round_ages)
        err = np.abs(pred - ages)
        return f"{err.mean():.3f} | {(err <= 5).mean():.3f}"

    class Reader(CalibrationDataReader):
        def __init__(self, faces: np.ndarray) -> None:
            self.batches = iter([{"images": faces[i : i + 32]} for i in range(0, len(faces), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        export_onnx(model, fp32)
        quant_pre_process(str(fp32), str(prepared))
        print(f"| graph | {args.split} MAE | {args.split} CS@5 | quantize s |\n|---|---:|---:|---:|\n| float32 | {score(fp32)} | – |")
        methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
        for method, n, extra in VARIANTS:
            start = time.perf_counter()
            target = Path(tmp) / "int8.onnx"
            quantize_static(str(prepared), str(target), Reader(calibration_batch(train, model.input_config, limit=n)), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[method],
                            extra_options=extra)
            name = f"int8 {method}, {n} faces" + (", moving average" if extra else "")
            print(f"| {name} | {score(target)} | {time.perf_counter() - start:.0f} |")


if __name__ == "__main__":
    main()
