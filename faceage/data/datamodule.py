"""``AgeDataModule``: dataset reader -> seeded split (saved) -> datasets with transforms from the model's input config."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from faceage.data.datasets import FaceDataset, ResumableLoader, cache_mode, collate_skip_none
from faceage.data.readers import read_dataset
from faceage.data.records import FaceRecord
from faceage.data.splits import fold_split, kfold_records, leave_one_subject_out, load_split, save_split, split_records
from faceage.data.transforms import (
    AugmentConfig,
    build_eval_transform,
    build_train_chip_transform,
    build_train_transform,
)

log = logging.getLogger(__name__)


@dataclass
class SplitConfig:
    """How records are divided.

    Attributes:
        val_fraction: share of records for validation.
        test_fraction: share for the test split (ignored in k-fold mode, where the fold is the test set).
        seed: split seed (independent of the training seed).
        stratify: keep the age distribution alike across splits.
        subject_exclusive: ``"auto"`` (when the dataset has subject ids), ``"yes"`` or ``"no"``.
        n_folds: 0 for a plain split; k for k-fold; -1 for leave-one-subject-out.
        fold: which fold is the test set in k-fold mode.
    """

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    stratify: bool = True
    subject_exclusive: str = "auto"
    n_folds: int = 0
    fold: int = 0


@dataclass
class DatasetSpec:
    """One dataset of a multi-dataset recipe (``data.datasets``).

    Attributes:
        name: reader (``utkface``, ``aaf``, ``fgnet``, ``csv``, ...).
        root: its folder (or CSV file).
        split_file: its saved split (JSON); computed with ``data.split`` and written there when missing (default:
            ``split_<label>.json`` in the log dir).
        weight: sampling weight: each training epoch draws ``weight x`` its training faces (0.5: a fresh half of
            them each epoch; 2: each face twice).
        label: the name its metrics are logged under (default: ``name``).
        reader_kwargs: extra reader arguments.
    """

    name: str
    root: str
    split_file: str | None = None
    weight: float = 1.0
    label: str | None = None
    reader_kwargs: dict | None = None


class AgeDataModule(L.LightningDataModule):
    """Faces and ages for training, validation, testing and cross-dataset testing.

    Args:
        dataset: reader name (``utkface``, ``afad``, ``cacd``, ``appa_real``, ``fgnet``, ``aaf``, ``csv``).
        root: dataset folder (or CSV file for ``csv``).
        reader_kwargs: extra reader arguments (e.g. ``{"split": "train"}`` for APPA-REAL).
        split: how to split (see :class:`SplitConfig`).
        split_file: JSON split to load; when missing it is computed and written there (default: in the log dir).
        test_dataset: reader of a second dataset used whole as the test set (cross-dataset evaluation).
        test_root: its folder.
        batch_size: per-process batch size.
        num_workers: loader worker processes.
        augment: training augmentation.
        augment_on: ``"batch"`` (default): the loader yields cached uint8 chips and
            :class:`~faceage.data.batch_augment.BatchAugment` augments whole training batches after transfer (fast on
            CPUs, ``benchmarks/train_throughput.py``); ``"sample"``: torchvision transforms per face in the workers.
        cache_images: ``"disk"`` (default): decode each face once into the memory-mapped chip cache
            (:mod:`faceage.data.chips`, reused by later runs, invalidated by file content); ``"memory"`` (or ``true``):
            keep decoded chips in memory for this run; ``"none"`` (or ``false``): decode every time.
        cache_dir: chip cache folder (default ``$FACEAGE_CACHE/chips`` or ``~/.cache/faceage/chips``).
        max_samples: use only this many records (seeded subsample) for quick runs; 0 = all.
        check_images: let readers open each file's header and report unreadable ones up front.
        train_splits: the splits whose faces train the model (default ``["train"]``). ``["train", "val"]`` refits a
            final model on both with the same split, so the test faces stay unseen; its validation figures are
            then on trained faces and only show convergence (and the "best" checkpoint is about the last one).
        datasets: several datasets at once (see :class:`DatasetSpec`); replaces ``dataset``/``root``/
            ``split_file``. Each is read by its own reader and split on its own (seeded, saved per dataset); the
            records carry their dataset's label as ``source``, and the splits are the union of theirs. Validation
            then logs the MAE of each dataset (``val/mae_<label>``) and uses their mean as ``val/mae``.
        align: ``auto`` (default): images that are not aligned chips (not square and small) are detected and aligned
            once, the chips cached by content (:mod:`faceage.data.aligned_cache`); ``always``; ``never``.
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
        batch_size: int = 64,
        num_workers: int = 2,
        augment: AugmentConfig | None = None,
        augment_on: str = "batch",
        cache_images: bool | str = "disk",
        cache_dir: str | None = None,
        max_samples: int = 0,
        check_images: bool = True,
        train_splits: list[str] | None = None,
        datasets: list[DatasetSpec] | None = None,
        align: str = "auto",
    ) -> None:
        super().__init__()
        from faceage.data.aligned_cache import ALIGN_MODES

        if align not in ALIGN_MODES:
            raise ValueError(f"data.align must be one of {', '.join(ALIGN_MODES)}, got {align!r}")
        self.align = align
        self.specs = [s if isinstance(s, DatasetSpec) else DatasetSpec(**s) for s in (datasets or [])]
        labels = [s.label or s.name for s in self.specs]
        if len(set(labels)) != len(labels):
            raise ValueError(f"data.datasets: labels must differ (got {labels}); set 'label' on each dataset")
        for spec in self.specs:
            if spec.weight < 0:
                raise ValueError(f"data.datasets: weight of {spec.label or spec.name!r} must be >= 0, got {spec.weight}")
        self.sources = labels
        self.dataset, self.root = dataset, root
        self.reader_kwargs = dict(reader_kwargs or {})
        self.split_config = split or SplitConfig()
        self.split_file = split_file
        self.test_dataset, self.test_root = test_dataset, test_root
        self.batch_size, self.num_workers = batch_size, num_workers
        self.augment = augment or AugmentConfig()
        if augment_on not in ("batch", "sample"):
            raise ValueError(f"data.augment_on must be 'batch' or 'sample', got {augment_on!r}")
        if augment_on == "sample" and self.augment.photo_effects():
            raise ValueError("data.augment: sepia, blur, low_res, jpeg, color_cast and noise need data.augment_on: batch")
        self.augment_on = augment_on
        self.batch_augment = None
        try:
            cache_mode(cache_images)
        except ValueError as e:
            raise ValueError(f"data.cache_images: {e}") from None
        self.cache_images, self.cache_dir = cache_images, cache_dir
        self.max_samples = max_samples
        self.check_images = check_images
        self.train_splits = list(train_splits or ["train"])
        self.records: list[FaceRecord] = []
        self.splits: dict[str, list[int]] = {}
        self.input_config: dict | None = None
        self.datasets: dict[str, FaceDataset] = {}

    # ---- records and split --------------------------------------------------------------------------------------
    def _read(self, name: str, root: str, reader_kwargs: dict | None = None) -> list[FaceRecord]:
        if not Path(root).exists():
            raise FileNotFoundError(f"{root}: dataset folder not found (dataset {name!r})")
        if reader_kwargs is None:  # the recipe's reader_kwargs belong to its own root, not to a test dataset
            reader_kwargs = self.reader_kwargs if root == self.root else {}
        records, report = read_dataset(name, root, check_images=self.check_images, **reader_kwargs)
        log.info("%s", report.summary())
        print(report.summary())
        if not records:
            raise ValueError(f"{root}: no usable records for dataset {name!r}")
        from faceage.data.aligned_cache import align_records

        # raw photos (not aligned chips) become cached aligned chips; photos without a face are named and left out
        records, aligned = align_records([r for r in records if r.age is not None], self.align, source=str(root))
        log.info("%s", aligned.summary())
        print(aligned.summary())
        if not records:
            raise ValueError(f"{root}: no face found in any image of dataset {name!r}")
        return records

    def _make_split(self, records: list[FaceRecord]) -> dict[str, list[int]]:
        c = self.split_config
        subject = {"auto": "auto", "yes": True, "no": False}.get(str(c.subject_exclusive), c.subject_exclusive)
        if c.n_folds == 0:
            return split_records(records, c.val_fraction, c.test_fraction, seed=c.seed, stratify=c.stratify, subject_exclusive=subject)
        folds = leave_one_subject_out(records) if c.n_folds < 0 else kfold_records(records, c.n_folds, seed=c.seed, by_subject=subject)
        if not 0 <= c.fold < len(folds):
            raise ValueError(f"fold {c.fold} out of range: there are {len(folds)} folds")
        return fold_split(records, folds, c.fold, val_fraction=c.val_fraction, seed=c.seed)

    def _split_path(self, tag: str | None = None) -> Path | None:
        if self.split_file and tag is None:
            return Path(self.split_file)
        trainer = getattr(self, "trainer", None)
        log_dir = trainer.log_dir if trainer is not None else None
        return Path(log_dir) / (f"split_{tag}.json" if tag else "split.json") if log_dir else None

    def _records_and_split(self, name: str, root: str, split_file: str | None, tag: str | None,
                           reader_kwargs: dict | None = None) -> tuple[list[FaceRecord], dict[str, list[int]]]:
        """One dataset's records (subsampled to ``max_samples``) and its split, loaded from ``split_file`` or
        computed and saved there."""
        if name == "auto":
            from faceage.data.readers.guess import guess_reader

            name = guess_reader(root)
        records = self._read(name, root, reader_kwargs)
        if tag is not None:
            records = [replace(r, source=tag) for r in records]
        path = Path(split_file) if split_file else self._split_path(tag)
        subsample = bool(self.max_samples and len(records) > self.max_samples)
        if subsample:
            import numpy as np

            keep = np.sort(np.random.default_rng(self.split_config.seed).choice(len(records), self.max_samples, replace=False))
        if subsample and not (path is not None and path.exists()):
            records = [records[i] for i in keep]
        if path is not None and path.exists():
            splits = load_split(path, records)
            if subsample:  # the saved split's faces, a seeded subset of them
                new_index = {int(old): new for new, old in enumerate(keep)}
                records = [records[i] for i in keep]
                splits = {k: [new_index[i] for i in v if i in new_index] for k, v in splits.items()}
            print(f"split loaded from {path}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
        else:
            splits = self._make_split(records)
            trainer = getattr(self, "trainer", None)
            if path is not None and (trainer is None or trainer.is_global_zero):
                path.parent.mkdir(parents=True, exist_ok=True)
                save_split(splits, path, records)
                print(f"split saved to {path}: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
        return records, splits

    def prepare_records(self) -> None:
        """Reads the dataset(s) and loads or computes (and saves) the split. Idempotent."""
        if self.records:
            return
        if not self.specs:
            self.records, self.splits = self._records_and_split(self.dataset, self.root, self.split_file, None)
            return
        records: list[FaceRecord] = []
        splits: dict[str, list[int]] = {}
        for spec, label in zip(self.specs, self.sources):
            part, part_splits = self._records_and_split(spec.name, spec.root, spec.split_file, label, dict(spec.reader_kwargs or {}))
            for split_name, idx in part_splits.items():
                splits.setdefault(split_name, []).extend(len(records) + i for i in idx)
            records.extend(part)
        self.records, self.splits = records, splits

    def subset(self, name: str) -> list[FaceRecord]:
        return [self.records[i] for i in self.splits.get(name, [])]

    def training_records(self) -> list[FaceRecord]:
        """The records of ``train_splits`` (each face once, in record order)."""
        unknown = [name for name in self.train_splits if name not in self.splits]
        if unknown:
            raise ValueError(f"data.train_splits: no split named {unknown} (the split has {sorted(self.splits)})")
        return [self.records[i] for i in sorted({i for name in self.train_splits for i in self.splits[name]})]

    # ---- Lightning hooks ----------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        self.prepare_records()
        module = getattr(self.trainer, "lightning_module", None) if getattr(self, "trainer", None) else None
        if module is not None:
            self.input_config = module.model.input_config
        if self.input_config is None:
            raise RuntimeError("AgeDataModule needs input_config (set by the model) before setup")
        eval_tf = build_eval_transform(self.input_config)
        cache = {"cache": self.cache_images, "cache_dir": self.cache_dir, "sources": self.sources}
        if self.augment_on == "batch":
            from faceage.data.batch_augment import BatchAugment

            self.batch_augment = BatchAugment(self.input_config, self.augment)
            train_tf = build_train_chip_transform(self.input_config)
        else:
            train_tf = build_train_transform(self.input_config, self.augment)
        self.datasets["train"] = FaceDataset(self.training_records(), train_tf, **cache)
        for name in ("val", "test"):
            self.datasets[name] = FaceDataset(self.subset(name), eval_tf, **cache)
        if self.test_dataset:
            self.datasets["test"] = FaceDataset(self._read(self.test_dataset, self.test_root or ""), eval_tf, cache="none", sources=self.sources)
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage or "", ("train", "val", "test"))
        for name in wanted:
            self.datasets[name].preload()

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        rank, world = self._world()
        weights = [s.weight for s in self.specs]
        weighted = shuffle and self.specs and any(w != 1.0 for w in weights)
        return ResumableLoader(
            self.datasets[name],
            batch_size=self.batch_size,
            seed=self.split_config.seed if not shuffle else _training_seed(),
            shuffle=shuffle,
            rank=rank,
            world_size=world,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            groups=self.datasets[name].source_ids if weighted else None,
            group_weights=weights if weighted else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["test"], batch_size=self.batch_size, num_workers=self.num_workers, collate_fn=collate_skip_none)

    def on_after_batch_transfer(self, batch: dict | None, dataloader_idx: int) -> dict | None:
        """Batch augmentation of training batches (uint8 chips from ``build_train_chip_transform``), on their device."""
        if batch is not None and self.batch_augment is not None and batch["image"].dtype == torch.uint8:
            images = batch["image"]
            self.batch_augment.to(images.device)
            batch = {**batch, "image": self.batch_augment(images, seed=int(batch["seed"][0]))}
        return batch

    def state_dict(self) -> dict:
        return {"split_config": asdict(self.split_config)}

def _training_seed() -> int:
    """The run's seed (``seed_everything`` sets ``PL_GLOBAL_SEED``), so data order follows ``--seed_everything``."""
    import os

    return int(os.environ.get("PL_GLOBAL_SEED", 0))
