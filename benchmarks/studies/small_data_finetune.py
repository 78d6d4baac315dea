"""Fine-tuning the Cydral net on ~800 faces (FG-NET's regime) on a stand-in: does it beat the untouched network,
and does fitting the untouched network's predictions too (teacher ``start``) help?

FG-NET is not here, so the stand-in draws 1,002 faces from ``../shared/data/utkface`` (or ``aaf``) with FG-NET's
age mix (371, 339, 144, 79, 46, 15 and 8 faces in the decades 0-9 .. 60-69) and turns 17% of them greyscale, as
FG-NET's scans are. Each variant trains the recipe's model (``cydral_resnet10`` at 64 px, the mean-variance head
started from the Cydral classifier) in process on each of ``--folds`` folds: AdamW, one warm-up epoch then cosine,
batch augmentation as ``data.augment``, the best epoch on a tenth of the training faces kept, flip averaging at
test; ``--folds`` x ``--only-folds`` pick the work. A variant is ``key=value`` pairs: ``ep`` epochs (0: untouched),
``lr`` head and ``blr`` backbone rates, ``w`` teacher weight, ``wd`` weight decay, ``bs`` batch size.
``--start MODEL`` starts every variant from a trained faceage model (``model.init_from``; ages 0-110) instead of the
untuned net: pretraining on another age dataset, as Pan et al. pretrain on IMDB-WIKI before FG-NET.
``--old-prints`` makes every stand-in face look like a scanned print too (48 px and back, JPEG quality 40).

    python -m benchmarks.studies.small_data_finetune --variants ep=0 "ep=8,lr=1e-3,blr=1e-4,w=0" \
        "ep=8,lr=1e-3,blr=1e-4,w=0.5" --json benchmarks/studies/small_data_finetune.json
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import re
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, write_json

FGNET_DECADES = (371, 339, 144, 79, 46, 15, 8)  # FG-NET's 1,002 images by decade of age, 0-9 .. 60-69
FGNET_GREY = 0.17  # 175 of its 1,002 scans are greyscale


def stand_in(source: str, seed: int = 0) -> tuple[list[str], list[int]]:
    """Files and ages of the stand-in: FG-NET's age mix drawn from ``utkface`` or ``aaf``."""
    folder = REPO.parent / "shared" / "data" / source
    files = sorted(str(p) for p in folder.glob("*.jpg"))
    if source == "utkface":
        ages = {f: int(Path(f).name.split("_")[0]) for f in files}
    else:
        ages = {f: int(re.match(r"\d+A(\d+)", Path(f).name).group(1)) for f in files}
    rng = random.Random(seed)
    chosen = []
    for decade, count in enumerate(FGNET_DECADES):
        pool = [f for f in files if 10 * decade <= ages[f] < 10 * decade + 10]
        chosen += rng.sample(pool, min(len(pool), count))
    return chosen, [ages[f] for f in chosen]


def old_print(image):
    """``image`` as a scanned print: 48 px and back, then JPEG quality 40."""
    import io

    from PIL import Image

    small = image.resize((48, 48), Image.BILINEAR).resize(image.size, Image.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=40)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def run_variant(spec: str, data: dict, folds: list[np.ndarray], only: list[int]) -> dict:
    """Trains and tests one variant on the folds ``only``; per fold the untouched, best-epoch and last-epoch MAE."""
    import torch

    from faceage.data.batch_augment import BatchAugment
    from faceage.data.transforms import AugmentConfig
    from faceage.training.distill import soft_target_loss

    v = dict(kv.split("=") for kv in spec.split(","))
    epochs, lr, blr, w = int(v.get("ep", 8)), float(v.get("lr", 1e-3)), float(v.get("blr", 1e-4)), float(v.get("w", 0))
    wd, bs = float(v.get("wd", 5e-4)), int(v.get("bs", 32))
    base, x_eval, x_train, y = data["model"], data["eval"], data["train"], data["ages"]
    augment = BatchAugment(base.input_config, AugmentConfig(hflip=True, rotation=10, translate=0.04, scale=0.08,
                                                            color_jitter=0.2, grayscale=0.2))

    def mae(model, idx) -> float:
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model.predict(x_eval[idx[i:i + 256]], flip=True)["age"] for i in range(0, len(idx), 256)])
        return float((pred.round() - y[idx]).abs().mean())

    rows = []
    for k in only:
        test = folds[k]
        rest = np.random.default_rng(k).permutation(np.concatenate([f for j, f in enumerate(folds) if j != k]))
        val, train = rest[: len(rest) // 10], rest[len(rest) // 10:]
        model = copy.deepcopy(base)
        start = copy.deepcopy(base).eval().requires_grad_(False)
        row = {"fold": k, "untouched": mae(model, test)}
        if epochs:
            head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
            backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
            opt = torch.optim.AdamW([{"params": head, "lr": lr}, {"params": backbone, "lr": blr}], weight_decay=wd)
            per_epoch = math.ceil(len(train) / bs)
            total = epochs * per_epoch
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s, warm=per_epoch, total=total: (s + 1) / warm if s < warm
                                                      else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
            best, best_state, curve = math.inf, None, []
            g = torch.Generator().manual_seed(k)
            for epoch in range(epochs):
                model.train()
                order = train[torch.randperm(len(train), generator=g).numpy()]
                for i in range(0, len(order), bs):
                    idx = order[i:i + bs]
                    if len(idx) < 2:
                        continue
                    x = augment(x_train[idx], seed=epoch * 100_000 + i)
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        out = model(x)
                    out = {name: t.float() for name, t in out.items()}
                    none = torch.full((len(idx),), -1)
                    loss = model.loss(out, y[idx], none, 0.0, none, 0.0)["loss"]
                    if w > 0:
                        with torch.no_grad():
                            soft = start.predict(x, flip=True)
                        loss = (1 - w) * loss + w * soft_target_loss(model, out, soft)["soft_loss"]
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                curve.append(round(mae(model, val), 3))
                if curve[-1] < best:
                    best, best_state = curve[-1], copy.deepcopy(model.state_dict())
            row["last"] = mae(model, test)
            model.load_state_dict(best_state)
            row["best_epoch"] = mae(model, test)
            row["val_curve"] = curve
        rows.append(row)
        print(f"  {spec} fold {k}: {row}", flush=True)
    summary = {key: float(np.mean([r[key] for r in rows])) for key in ("untouched", "best_epoch", "last") if key in rows[0]}
    return {"variant": spec, "folds": rows, "mean": summary}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=("utkface", "aaf"), default="utkface")
    p.add_argument("--variants", nargs="+", required=True)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--only-folds", type=int, nargs="*", default=None)
    p.add_argument("--old-prints", action="store_true", help="every face 48 px and back, JPEG 40 (scanned prints)")
    p.add_argument("--start", default=None, help="a trained model folder to start from (model.init_from)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import torch
    from PIL import Image

    from faceage.data.transforms import _train_static, build_eval_transform
    from faceage.models.age_model import AgeModel
    from faceage.models.cydral import init_head_from_cydral

    torch.manual_seed(0)
    files, ages = stand_in(args.source)
    base = AgeModel("cydral_resnet10", head="mean_variance", pretrained=True, image_size=64, crop=0.9, min_age=0,
                    max_age=110 if args.start else 80)
    init_head_from_cydral(base.head)
    if args.start:
        from faceage.models.pretrained import start_from

        start_from(base, args.start)
    eval_tf, (train_static, _) = build_eval_transform(base.input_config), _train_static(base.input_config)
    rng = np.random.default_rng(0)
    images = [Image.open(f).convert("RGB") for f in files]
    images = [im.convert("L").convert("RGB") if rng.random() < FGNET_GREY else im for im in images]
    if args.old_prints:
        images = [old_print(im) for im in images]
    data = {"model": base, "ages": torch.tensor(ages, dtype=torch.float32),
            "eval": torch.stack([eval_tf(im) for im in images]),
            "train": torch.stack([torch.from_numpy(np.array(train_static(im))).permute(2, 0, 1) for im in images])}
    order = np.random.default_rng(1).permutation(len(files))
    folds = [order[k::args.folds] for k in range(args.folds)]
    only = args.only_folds if args.only_folds is not None else list(range(args.folds))
    results = []
    for spec in args.variants:
        start = time.perf_counter()
        results.append({**run_variant(spec, data, folds, only), "wall_seconds": round(time.perf_counter() - start, 1)})
        print(f"{spec}: {results[-1]['mean']}", flush=True)
    if args.json:
        write_json({"source": args.source, "start": args.start, "old_prints": args.old_prints, "n_faces": len(files), "folds": args.folds, "results": results}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
