"""Do calibrated intervals and over-18 decisions hold on faces unlike the calibration faces?

For one model, fits the calibration (``faceage calibrate``'s :func:`faceage.evaluation.calibration.fit_calibration`)
on the validation faces of UTKFace alone, and of UTKFace + All-Age-Faces, with plain and with normalised conformal
scores, and measures each on the test faces of every dataset, as they are and as old prints
(``benchmarks/per_dataset.py --old-photos``): interval coverage and width, and the share of 13-17-year-olds and of
those 25+ that pass over 18. Predictions come from ``benchmarks/per_dataset.py``'s cache (made on first use).

    python -m benchmarks.calibration_transfer faceage/weights/default --engine onnx --json benchmarks/calibration_transfer.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from benchmarks.common import write_json
from benchmarks.per_dataset import DATASETS, predictions


def evaluate(cal: dict, p: dict[str, np.ndarray], over: int = 18) -> dict[str, Any]:
    from faceage.inference.calibration import Calibration, p_over

    c = Calibration(cal, 0, 110)
    dist, ages, true = p["dist"].astype(np.float64), p["age"].astype(np.float64), p["true"].astype(np.float64)
    lo, hi = c.intervals(dist, ages, 0.9)
    passed = p_over(dist, 0, over) >= c.policy(over)["threshold"]
    minors, adults = (true >= over - 5) & (true < over), true >= 25
    return {"coverage90": round(float(((true >= lo) & (true <= hi)).mean()), 3), "width90": round(float((hi - lo).mean()), 2),
            "minors_n": int(minors.sum()), "minors_pass": round(float(passed[minors].mean()), 4),
            "adults25_pass": round(float(passed[adults].mean()), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--engine", default="onnx", choices=["torch", "onnx"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from faceage.evaluation.calibration import fit_calibration

    present = [d for d in DATASETS if DATASETS[d][0].is_dir()]
    if not present:
        raise SystemExit("no shared datasets found (../shared/data/utkface, ../shared/data/aaf)")
    val = {d: predictions(args.model, d, "val", args.engine) for d in present}
    tests = {f"{d}{suffix}": predictions(args.model, d, "test", args.engine, old=bool(suffix)) for d in present for suffix in ("", "-old")}
    result: dict[str, Any] = {"command": "python -m benchmarks.calibration_transfer " + " ".join(argv if argv is not None else sys.argv[1:]),
                              "model": args.model, "engine": args.engine, "fits": {}}
    for fit_on in ([present[0]], present) if len(present) > 1 else ([present[0]],):
        cat = {k: np.concatenate([val[d][k] for d in fit_on]) for k in ("dist", "age", "true")}
        groups = [d for d in fit_on for _ in range(len(val[d]["true"]))] if len(fit_on) > 1 else None
        for scale in (None, "std"):
            cal = fit_calibration(cat["dist"].astype(np.float64), cat["age"].astype(np.float64), cat["true"].astype(np.float64),
                                  base_level="auto", scale=scale, groups=groups)
            name = f"{'+'.join(fit_on)} val, scores {'normalised' if scale else 'plain'}"
            result["fits"][name] = {t: evaluate(cal, p) for t, p in tests.items()}
            for t, r in result["fits"][name].items():
                print(f"{name:40s} {t:12s} cov90 {r['coverage90']:.3f} width {r['width90']:5.1f}  over18: "
                      f"{r['minors_pass']:.3f} of {r['minors_n']} aged 13-17 pass, {r['adults25_pass']:.3f} of 25+", flush=True)
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
