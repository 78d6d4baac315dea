"""Which trained models to ensemble, and whether flip TTA still pays: every combination of the given models, on the
validation and test parts of one saved split, with and without flip averaging.

For each model the script predicts every val/test face once plain and once mirrored (PyTorch, the model's own
preprocessing) and caches the outputs; combinations then average the members' age distributions (and gender / race
probabilities over the members that have them), exactly as ``AgeEnsemble`` does. Also prints the "who is older"
accuracy of each combination's age-difference comparator on 20,000 random pairs per split (gap >= 1 year).

    python -m benchmarks.studies.ensembles RUN_A/model RUN_B/model RUN_C/model --split-file RUN_A/split.json
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from benchmarks.common import read_split, split_parser

PARTS = ("val", "test")


def model_outputs(model_dir: str, records: list, split: dict, batch_size: int = 256) -> dict[str, np.ndarray]:
    """``{"<part>_<plain|flip>_<age|dist|gender|race>": array}`` for one model (missing heads left out)."""
    import torch

    from faceage.data.images import load_image
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.age_model import load_model

    model = load_model(model_dir).eval()
    if model.config["min_age"] != 0 or "distribution" not in model.output_names:
        raise SystemExit(f"{model_dir}: this comparison needs age distributions over 0..max_age")
    out: dict[str, np.ndarray] = {}
    for part in PARTS:
        idx = split[part]
        chunks: dict[str, list] = {}
        for start in range(0, len(idx), batch_size):
            x = torch.from_numpy(np.stack([preprocess_chip(load_image(records[i].path), model.input_config) for i in idx[start : start + batch_size]]))
            for view, images in (("plain", x), ("flip", x.flip(-1))):
                with torch.no_grad():
                    dec = model.decode(model(images))
                for name, key in (("distribution", "dist"), ("gender_prob", "gender"), ("race_probs", "race")):
                    if name in dec:
                        chunks.setdefault(f"{part}_{view}_{key}", []).append(dec[name].numpy())
        out.update({k: np.concatenate(v) for k, v in chunks.items()})
    return out


def truth_by_part(records: list, split: dict) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{part: (ages, genders, races)}`` of the val and test faces; -1 where a label is missing."""
    def labels(idx, field):
        return np.array([-1 if getattr(records[i], field) is None else getattr(records[i], field) for i in idx])

    return {part: (np.array([records[i].age for i in split[part]], float), labels(split[part], "gender"), labels(split[part], "race")) for part in PARTS}


def combine(outputs: list[dict], part: str, flip: bool, key: str) -> np.ndarray | None:
    views = ("plain", "flip") if flip else ("plain",)
    have = [o for o in outputs if f"{part}_plain_{key}" in o]
    if not have:
        return None
    return np.mean([np.mean([o[f"{part}_{v}_{key}"] for v in views], axis=0) for o in have], axis=0)


def pair_accuracy(dist: np.ndarray, ages: np.ndarray, n_pairs: int = 20000, seed: int = 0) -> tuple[float, float]:
    """Accuracy overall and for gaps <= 5 years of P(left older) from two age distributions."""
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(ages), 2 * n_pairs), rng.integers(0, len(ages), 2 * n_pairs)
    keep = ages[i] != ages[j]
    i, j = i[keep][:n_pairs], j[keep][:n_pairs]
    below = np.cumsum(dist[j], -1) - dist[j]
    p = (dist[i] * (below + 0.5 * dist[j])).sum(-1)
    ok = (p > 0.5) == (ages[i] > ages[j])
    close = np.abs(ages[i] - ages[j]) <= 5
    return float(ok.mean()), float(ok[close].mean())


def main() -> None:
    p = split_parser(__doc__, split=None)
    p.add_argument("models", nargs="+", help="model dirs (run/model)")
    p.add_argument("--names", nargs="+", default=None, help="short names for the models (default m0, m1, ...)")
    p.add_argument("--cache", default=None, help="folder to cache each model's outputs (.npz)")
    p.add_argument("--max-members", type=int, default=0, help="largest combination to print (0: all models)")
    p.add_argument("--whole-years", action="store_true", help="instead: MAE and CS@5 of the expectation as is vs rounded to whole years")
    args = p.parse_args()
    records, split = read_split(args)
    names = args.names or [f"m{i}" for i in range(len(args.models))]
    outputs = {}
    for name, model in zip(names, args.models):
        cached = Path(args.cache) / f"{name}.npz" if args.cache else None
        if cached and cached.exists():
            outputs[name] = dict(np.load(cached))
        else:
            outputs[name] = model_outputs(model, records, split)
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, **outputs[name])
    truth = truth_by_part(records, split)
    combos = [c for r in range(1, (args.max_members or len(names)) + 1) for c in itertools.combinations(names, r)]
    if args.whole_years:
        print_whole_years(outputs, combos, {part: t[0] for part, t in truth.items()})
        return
    print("| members | flip | val MAE | val CS@5 | val gender | val race | test MAE | test CS@5 | test gender | test race | val pairs (all / gap<=5) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for combo in combos:
        for flip in (False, True):
            cells = []
            for part in PARTS:
                ages, gender, race = truth[part]
                outs = [outputs[n] for n in combo]
                dist = combine(outs, part, flip, "dist")
                err = np.abs(dist @ np.arange(dist.shape[1]) - ages)
                g, rc = combine(outs, part, flip, "gender"), combine(outs, part, flip, "race")
                gk, rk = gender >= 0, race >= 0
                gacc = f"{((g[gk] >= 0.5) == (gender[gk] == 1)).mean():.3f}" if g is not None else "–"
                racc = f"{(rc.argmax(1)[rk] == race[rk]).mean():.3f}" if rc is not None else "–"
                cells += [f"{err.mean():.3f}", f"{(err <= 5).mean():.3f}", gacc, racc]
                if part == "val":
                    pairs = "{:.3f} / {:.3f}".format(*pair_accuracy(dist, ages))
            print(f"| {'+'.join(combo)} | {'on' if flip else 'off'} | " + " | ".join(cells) + f" | {pairs} |")


def print_whole_years(outputs: dict, combos: list, ages: dict) -> None:
    """MAE and CS@5 of each combination's expected age as is, and rounded to whole years (``round_ages``)."""
    print("| model | flip | val MAE (exp. / rounded) | val CS@5 (exp. / rounded) | test MAE (exp. / rounded) | test CS@5 (exp. / rounded) |")
    print("|---|---|---|---|---|---|")
    for combo in combos:
        for flip in (False, True):
            cells = []
            for part in PARTS:
                dist = combine([outputs[n] for n in combo], part, flip, "dist")
                expected = dist @ np.arange(dist.shape[1])
                e, r = np.abs(expected - ages[part]), np.abs(np.round(expected) - ages[part])
                cells += [f"{e.mean():.3f} / {r.mean():.3f}", f"{(e <= 5).mean():.3f} / {(r <= 5).mean():.3f}"]
            print(f"| {'+'.join(combo)} | {'on' if flip else 'off'} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
