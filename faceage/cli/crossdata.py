"""``faceage crossdata``: train on each dataset, test on every dataset's held-out faces; the matrix as JSON, markdown
and a heatmap (:func:`faceage.training.crossdata.run_crossdata`)."""

from __future__ import annotations

import argparse

DESCRIPTION = """Cross-dataset tests: one model per dataset (a ``faceage fit`` of the recipe on it), each tested on the
held-out test split of every dataset. Writes OUTPUT/crossdata.json, crossdata.md (table) and crossdata.png (heatmap).

  faceage crossdata --config configs/seeds/002_utkface_multitask.yaml \\
      --datasets utkface=../shared/data/utkface aaf=../shared/data/aaf --output runs/crossdata
"""


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="faceage crossdata", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Other --key value arguments are passed to every fit and test.")
    p.add_argument("--config", required=True, help="the recipe every model trains with")
    p.add_argument("--datasets", nargs="+", required=True, metavar="[LABEL:]READER=FOLDER",
                   help="the datasets, e.g. utkface=../shared/data/utkface aaf=../shared/data/aaf fgnet=FGNET/images")
    p.add_argument("--output", default="runs/crossdata")
    args, overrides = p.parse_known_args(argv)
    from faceage.training.crossdata import RESULTS_JSON, RESULTS_MD, RESULTS_PNG, DatasetArg, run_crossdata

    try:
        datasets = [DatasetArg.parse(item) for item in args.datasets]
    except ValueError as e:
        print(f"error: {e}")
        return 2
    result = run_crossdata(args.config, datasets, args.output, overrides)
    from faceage.evaluation.cross_dataset import matrix_markdown

    print(matrix_markdown(result["trained_on"], result["mae"]))
    print(f"results: {args.output}/{{{RESULTS_JSON},{RESULTS_MD},{RESULTS_PNG}}} "
          f"({result['wall_seconds']['total'] / 60:.1f} min)")
    return 0
