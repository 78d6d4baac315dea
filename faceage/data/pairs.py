"""The pair data module: faces labelled "left is older", drawn inside each split of any age dataset.

:class:`PairDataModule` splits the *records* first (``split_records``: stratified, subject-exclusive where the
dataset has subjects) and builds pairs inside each split (:mod:`faceage.data.pair_sampling`), so no image appears
in two splits. Fixed pair sets are read and written as CSV (``left,right[,label]``, :mod:`faceage.data.pair_csv`);
the validation and test pairs of a run are written to its log folder so they can be reused. The names of those
modules and of :mod:`faceage.data.pair_dataset` are importable from here as well.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from faceage.data.datamodule import AgeDataModule, SplitConfig
from faceage.data.pair_csv import PAIR_CSV_COLUMNS, PairRow, read_pair_csv, resolve_pair_path, write_pair_csv
from faceage.data.pair_dataset import PairDataset, pair_dataset_from_csv
from faceage.data.pair_sampling import PairConfig, count_pairs, pair_labels, pairs_from_config, sample_pairs
from faceage.data.splits import SPLIT_NAMES
from faceage.data.transforms import AugmentConfig, build_eval_transform, build_train_transform

__all__ = [
    "PAIR_CSV_COLUMNS",
    "PairConfig",
    "PairDataModule",
    "PairDataset",
    "PairRow",
    "count_pairs",
    "pair_dataset_from_csv",
    "pair_labels",
    "pairs_from_config",
    "read_pair_csv",
    "resolve_pair_path",
    "sample_pairs",
    "write_pair_csv",
]


class PairDataModule(AgeDataModule):
    """Pairs of faces labelled "left is older", built inside each split of any age dataset.

    Reading, splitting (saved as ``split.json``), loaders and resume work as in :class:`AgeDataModule`; the model's
    ``input_config`` decides the transforms. The generated validation and test pairs are written to the log folder
    (``pairs_val.csv``, ``pairs_test.csv``) so that other models can be evaluated on the same pairs.

    Args:
        dataset: reader name (``utkface``, ``afad``, ...).
        root: dataset folder (or CSV for ``csv``).
        reader_kwargs: extra reader arguments.
        split: how records are split (pairs never cross splits).
        split_file: JSON split to load, or where to write it.
        test_dataset: a second dataset used whole for test pairs (cross-dataset evaluation).
        test_root: its folder.
        pairs: how training pairs are drawn.
        eval_pairs: how validation and test pairs are drawn (default: 5000 pairs, other knobs as ``pairs``).
        pair_files: fixed pair CSVs by split name (``{"val": "val_pairs.csv"}``) used instead of drawing; their
            images need not be in the dataset, rows without a label take it from the dataset's ages.
        batch_size: pairs per batch.
        num_workers: loader worker processes.
        augment: training augmentation (left and right independently).
        cache_images: keep decoded images in memory.
        max_samples: use only this many records (seeded subsample); 0 = all.
        check_images: let the reader check each file's header up front.
    """

    def __init__(
        self,
        dataset: str = "utkface",
        root: str = "../shared/data/utkface",
        reader_kwargs: dict | None = None,
        split: SplitConfig | None = None,
        split_file: str | None = None,
        test_dataset: str | None = None,
        test_root: str | None = None,
        pairs: PairConfig | None = None,
        eval_pairs: PairConfig | None = None,
        pair_files: dict[str, str] | None = None,
        batch_size: int = 64,
        num_workers: int = 2,
        augment: AugmentConfig | None = None,
        cache_images: bool = True,
        max_samples: int = 0,
        check_images: bool = True,
    ) -> None:
        # the parent's arguments, repeated so that LightningCLI shows (and checks) them under data.* (boilerplate)
        super().__init__(
            dataset=dataset,
            root=root,
            reader_kwargs=reader_kwargs,
            split=split,
            split_file=split_file,
            test_dataset=test_dataset,
            test_root=test_root,
            batch_size=batch_size,
            num_workers=num_workers,
            augment=augment,
            cache_images=cache_images,
            max_samples=max_samples,
            check_images=check_images,
        )
        self.pairs_config = pairs or PairConfig()
        if eval_pairs is None:
            p = self.pairs_config
            eval_pairs = PairConfig(p.seed, p.year_diff, 5000, p.duplicate_probability, p.unique_images)
        self.eval_pairs_config = eval_pairs
        self.pair_files = dict(pair_files or {})
        unknown = set(self.pair_files) - set(SPLIT_NAMES)
        if unknown:
            raise ValueError(f"pair_files keys must be among {SPLIT_NAMES}, got {sorted(unknown)}")
        self.datasets: dict[str, PairDataset] = {}  # type: ignore[assignment]

    def _module_input_config(self) -> dict | None:
        module = getattr(self.trainer, "lightning_module", None) if getattr(self, "trainer", None) else None
        if module is None:
            return self.input_config
        return getattr(module, "input_config", None) or module.model.input_config

    def build_pairs(self, name: str) -> np.ndarray:
        """Index pairs into ``self.subset(name)`` for split ``name`` (``train`` draws with ``pairs``, others with
        ``eval_pairs``)."""
        config = self.pairs_config if name == "train" else self.eval_pairs_config
        return pairs_from_config(self.subset(name), config, stream=SPLIT_NAMES.index(name))

    def setup(self, stage: str | None = None) -> None:
        self.prepare_records()
        self.input_config = self._module_input_config()
        if self.input_config is None:
            raise RuntimeError("PairDataModule needs input_config (set by the model) before setup")
        eval_tf = build_eval_transform(self.input_config)
        transforms = {"train": build_train_transform(self.input_config, self.augment), "val": eval_tf, "test": eval_tf}
        for name in SPLIT_NAMES:
            if name in self.pair_files:
                self.datasets[name] = pair_dataset_from_csv(
                    self.pair_files[name], transforms[name], self.records, cache=self.cache_images
                )
            elif name == "test" and self.test_dataset:
                records = self._read(self.test_dataset, self.test_root or "")
                self.datasets[name] = PairDataset(
                    records, pairs_from_config(records, self.eval_pairs_config, 2), eval_tf
                )
            else:
                self.datasets[name] = PairDataset(
                    self.subset(name), self.build_pairs(name), transforms[name], cache=self.cache_images
                )
        print("pairs: " + ", ".join(f"{k} {len(v)}" for k, v in self.datasets.items()))
        self._write_eval_pairs()
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", SPLIT_NAMES)
        for name in wanted:
            self.datasets[name].preload()

    def _write_eval_pairs(self) -> None:
        trainer = getattr(self, "trainer", None)
        log_dir = trainer.log_dir if trainer is not None else None
        if not log_dir or (trainer is not None and not trainer.is_global_zero):
            return
        for name in ("val", "test"):
            if name not in self.pair_files and len(self.datasets[name]):
                write_pair_csv(Path(log_dir) / f"pairs_{name}.csv", self.datasets[name].rows())

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "pairs": asdict(self.pairs_config),
            "eval_pairs": asdict(self.eval_pairs_config),
        }
