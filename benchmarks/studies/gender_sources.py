"""Which signal knows gender (and age) best, children included: a linear probe on each candidate source of features.

Sources, all computed once for every face of the shared UTKFace chips:
- the trained model's own gender output (its fine-tuned Cydral gender branch), as is;
- the trained model's age features (256-d, mean of the image and its mirror);
- dlib's face descriptor (``dlib_face_recognition_resnet_model_v1`` from ``face_recognition_models``, 128-d, on
  150 px chips at dlib's padding 0.25 cut from the UTKFace chips' geometry), the issue's suggested offline source;
- combinations. Each probe is a logistic regression fitted on the training split and scored on val and test.
For age, a small MLP on the dlib descriptor (log-age target) gives its validation MAE.

    python -m benchmarks.studies.gender_sources RUN/model --split-file RUN/split.json --cache ~/.cache/faceage/gender_sources
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np

from benchmarks.common import read_split, split_parser


def dlib_descriptors(paths: list[str]) -> tuple[np.ndarray, float]:
    """128-d dlib face descriptors of UTKFace chips, and the faces/s it ran at."""
    import dlib
    from PIL import Image

    spec = importlib.util.find_spec("face_recognition_models")  # not imported: its __init__ needs pkg_resources
    net = dlib.face_recognition_model_v1(str(Path(spec.origin).parent / "models" / "dlib_face_recognition_resnet_model_v1.dat"))
    # UTKFace chips: 200 px at padding 0.2; dlib's descriptor wants 150 px at padding 0.25 around the same face box
    face = 200 / 1.4
    half, c = face * 1.5 / 2, 100.0
    box = (c - half, c - half, c + half, c + half)
    out = np.zeros((len(paths), 128), np.float32)
    start = time.perf_counter()
    for s in range(0, len(paths), 64):
        chips = [np.asarray(Image.open(p).convert("RGB").transform((150, 150), Image.EXTENT, box, Image.BILINEAR)) for p in paths[s : s + 64]]
        out[s : s + len(chips)] = np.array([np.array(d) for d in net.compute_face_descriptor(chips)])
    return out, len(paths) / (time.perf_counter() - start)


def model_features(model_dir: str, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The model's age features ``(N, F)`` and gender logits ``(N,)``, each the mean over the image and its mirror."""
    import torch

    from faceage.data.images import load_image
    from faceage.inference.preprocess import preprocess_chip
    from faceage.models.age_model import load_model

    model = load_model(model_dir).eval()
    feats, logits = [], []
    for s in range(0, len(paths), 256):
        x = torch.from_numpy(np.stack([preprocess_chip(load_image(p), model.input_config) for p in paths[s : s + 256]]))
        with torch.no_grad():
            a, b = model(x), model(x.flip(-1))
        feats.append(((a["features"] + b["features"]) / 2).numpy())
        logits.append(((a["gender_logit"] + b["gender_logit"]) / 2).numpy())
    return np.concatenate(feats), np.concatenate(logits)


def main() -> None:
    p = split_parser(__doc__, split=None)
    p.add_argument("model", help="a trained multitask model dir with a gender output (run/model)")
    p.add_argument("--cache", default=None, help="folder to keep the computed features (the descriptors take ~10 min)")
    args = p.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    records, split = read_split(args)
    paths = [r.path for r in records]
    cache = Path(args.cache) / "features.npz" if args.cache else None
    if cache and cache.exists():
        z = np.load(cache)
        desc, feats, logits, speed = z["desc"], z["feats"], z["logits"], float(z["speed"])
    else:
        desc, speed = dlib_descriptors(paths)
        feats, logits = model_features(args.model, paths)
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, desc=desc, feats=feats, logits=logits, speed=speed)
    print(f"dlib descriptor: {speed:.1f} faces/s (one process, 150 px chips)")
    gender = np.array([-1 if r.gender is None else r.gender for r in records])
    age = np.array([r.age for r in records], float)
    train = np.array([i for i in split["train"] if gender[i] >= 0])
    sources = {
        "the model's gender branch, as trained": None,
        "age features": feats,
        "age features + branch logit": np.c_[feats, logits],
        "dlib descriptor": desc,
        "dlib descriptor + branch logit": np.c_[desc, logits],
        "dlib descriptor + age features + branch logit": np.c_[desc, feats, logits],
    }
    print("| gender from | val acc | val age < 10 | val age >= 10 | test acc | test age < 10 | test age >= 10 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, x in sources.items():
        cells = []
        clf = None if x is None else make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)).fit(x[train], gender[train])
        for part in ("val", "test"):
            idx = np.array([i for i in split[part] if gender[i] >= 0])
            pred = (logits[idx] > 0).astype(int) if clf is None else clf.predict(x[idx])
            ok, kid = pred == gender[idx], age[idx] < 10
            cells += [f"{ok.mean():.3f}", f"{ok[kid].mean():.3f}", f"{ok[~kid].mean():.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    tr, va = np.array(split["train"]), np.array(split["val"])
    mlp = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=300, early_stopping=True, random_state=0))
    pred = np.round(np.expm1(mlp.fit(desc[tr], np.log1p(age[tr])).predict(desc[va])))
    err = np.abs(pred - age[va])
    print(f"age from the dlib descriptor (MLP 256, whole years): val MAE {err.mean():.2f}, CS@5 {(err <= 5).mean():.3f}")


if __name__ == "__main__":
    main()
