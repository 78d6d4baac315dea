"""Does averaging the *weights* of fine-tuned members (a uniform "model soup", Wortsman et al., 2022) give an
ensemble's accuracy at one model's cost? Averages the given models' parameters and batch-norm statistics (they must
share one architecture), then scores the soup on the val and test parts of one saved split, whole-year ages, beside
the members and their ensemble (``benchmarks/studies/ensembles.py``'s cached outputs).

    python -m benchmarks.studies.weight_soup RUN_A/model RUN_B/model --split-file RUN_A/split.json [--output DIR]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import read_split, split_parser
from benchmarks.studies.ensembles import combine, model_outputs, truth_by_part


def weight_soup(model_dirs: list[str]):
    """One model whose floating tensors are the mean of the members' (integer buffers from the first)."""
    import torch

    from faceage.models.age_model import load_model

    models = [load_model(d) for d in model_dirs]
    soup = load_model(model_dirs[0])
    states = [m.state_dict() for m in models]
    soup.load_state_dict({k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v for k, v in states[0].items()})
    return soup


def main() -> None:
    p = split_parser(__doc__, split=None)
    p.add_argument("models", nargs="+", help="model dirs of one architecture")
    p.add_argument("--output", default=None, help="also save the soup here")
    args = p.parse_args()
    records, split = read_split(args)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.output or str(Path(tmp) / "soup")
        weight_soup(args.models).save_pretrained(out_dir)
        outputs = {"soup": model_outputs(out_dir, records, split)}
    outputs.update({f"m{i}": model_outputs(d, records, split) for i, d in enumerate(args.models)})
    members = [n for n in outputs if n != "soup"]
    ages = {part: t[0] for part, t in truth_by_part(records, split).items()}
    print("| model | flip | val MAE | val CS@5 | test MAE | test CS@5 |\n|---|---|---:|---:|---:|---:|")
    for label, names in [*((n, [n]) for n in members), ("ensemble of the members", members), ("weight soup", ["soup"])]:
        for flip in (False, True):
            cells = []
            for part in ("val", "test"):
                dist = combine([outputs[n] for n in names], part, flip, "dist")
                err = np.abs(np.round(dist @ np.arange(dist.shape[1])) - ages[part])
                cells += [f"{err.mean():.3f}", f"{(err <= 5).mean():.3f}"]
            print(f"| {label} | {'on' if flip else 'off'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
