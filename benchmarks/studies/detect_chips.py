"""Face detection on pre-cropped faces: how many UTKFace chips the detector finds, with and without the padded retry
(``FaceDetector(detector=..., pad_retry=...)``, the default detector unless ``--detector``), and whether detecting + re-aligning changes the ages against ``--no-detect``.

    python -m benchmarks.studies.detect_chips --split-file RUN/split.json --split test --limit 300 [--json FILE]
"""

from __future__ import annotations

import numpy as np

from benchmarks.common import read_split, split_parser


def main() -> None:
    p = split_parser(__doc__, split="test")
    p.add_argument("--limit", type=int, default=300, help="first N faces of the split (0: all)")
    p.add_argument("--model", default=None, help="age model (default: the bundled one)")
    p.add_argument("--detector", default=None, help="detector (default: faceage's default)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from faceage.data.detect import DEFAULT_DETECTOR, PAD_RETRY, FaceDetector
    from faceage.data.images import load_image
    from faceage.inference.predictor import Predictor

    records, split = read_split(args)
    idx = split[args.split]
    recs = [records[i] for i in (idx[: args.limit] if args.limit else idx)]
    images = [load_image(r.path) for r in recs]
    ages = np.array([r.age for r in recs])
    predictor = Predictor(args.model, engine="onnx", detect=False)
    whole = np.array([predictor.predict(im)[0].age for im in images])
    print(f"{len(recs)} {args.split} chips of {args.data}")
    print("| detection | faces found | MAE where found | MAE of --no-detect on the same faces |\n|---|---:|---:|---:|")
    rows = []
    for retry in (0.0, PAD_RETRY):
        detector = FaceDetector(detector=args.detector or DEFAULT_DETECTOR, pad_retry=retry)
        found = [(i, faces[0].chip) for i, faces in enumerate(detector.detect(im) for im in images) if faces]
        keep = np.array([i for i, _ in found], int)
        detected = np.array([predictor.predict(chip)[0].age for _, chip in found])
        rows.append({"detector": detector.detector, "pad_retry": retry, "found": len(found), "n": len(recs),
                     "mae_detected": float(np.abs(detected - ages[keep]).mean()),
                     "mae_no_detect_same_faces": float(np.abs(whole[keep] - ages[keep]).mean())})
        print(f"| pad_retry={retry:g} | {len(found)} of {len(recs)} | {rows[-1]['mae_detected']:.3f} | "
              f"{rows[-1]['mae_no_detect_same_faces']:.3f} |")
    if args.json:
        from benchmarks.common import write_json

        write_json({"data": args.data, "split": args.split, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
