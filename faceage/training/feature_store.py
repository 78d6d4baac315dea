"""Training on stored activations of the frozen backbone part (``model.backbone.feature_store: true``).

With ``transfer: frozen`` or ``partial`` the frozen layers give the same output for a face every epoch, up to the
augmentation. :class:`StoredFeatures` cuts the backbone at its split point (:mod:`faceage.models.backbone_split`),
runs the frozen part once over every face for ``feature_views`` views (view 0 unaugmented, the others drawn from the
recipe's augmentation with a fixed seed per face and view), stores the activations
(:class:`~faceage.data.feature_store.FeatureStore`), and swaps the fit's training and validation datasets for
:class:`~faceage.data.feature_store.StoreDataset` ones: each epoch then trains the trainable blocks and the heads
on one stored view per face, picked at random; validation reads view 0. The test stage, predict and export run the
whole network as usual (the trained blocks share their weights with it).

The store covers every record of the data module (all splits), so the folds of ``faceage kfold`` and later runs of
the same recipe share it; each fit computes only the rows it needs that are missing. Its key hashes the frozen
weights, the backbone and split point, the input preprocessing and alignment, the augmentation and view count, and
every record's path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from faceage.data.feature_store import MISSING, FeatureStore, StoreDataset, store_root
from faceage.models.backbone_split import BackboneSplit, split_backbone

VIEW_SEED = 0  # augmented views are drawn from (VIEW_SEED, view, row): fixed, so a store serves every run


class StoredFeatures:
    """The store side of a fit: the backbone split, the store's key, the fill and the swapped datasets.

    Args:
        model: the :class:`~faceage.models.age_model.AgeModel` being trained (its transfer mode applied).
        transfer: ``frozen`` or ``partial``.
        unfreeze_last: trainable blocks for ``partial``.
        views: stored views per training face (view 0 unaugmented).
        folder: stores' folder (default :func:`~faceage.data.feature_store.store_root`).
        teacher: the fit distils from a teacher (refused: it reads the images).
        probe_epochs: the fit starts with a linear probe (refused: it changes what is frozen).
    """

    def __init__(self, model: torch.nn.Module, transfer: str, unfreeze_last: int = 0, views: int = 4, folder: str | None = None,
                 teacher: bool = False, probe_epochs: int = 0) -> None:
        if teacher or probe_epochs:
            raise ValueError("model.backbone.feature_store trains on stored activations: it cannot be combined with a teacher "
                             "or probe_epochs (they need the images or change what is frozen)")
        if views < 1:
            raise ValueError(f"model.backbone.feature_views must be >= 1, got {views}")
        if model.gender_net is not None:
            raise ValueError("model.backbone.feature_store cannot train model.gender_net (it reads the images); set one of them off")
        self.split: BackboneSplit = split_backbone(model.backbone, transfer, unfreeze_last)
        self.views, self.folder = int(views), folder
        self.store: FeatureStore | None = None
        self.stats: dict = {}

    def forward(self, model: torch.nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's outputs (as ``model(images)`` gives them) from stored activations ``(B, *shape)``."""
        return model.forward_heads(self.split.trainable(features))

    # ---- key ----------------------------------------------------------------------------------------------------
    def key(self, model: torch.nn.Module, data, shape: tuple[int, ...], bf16: bool = False) -> tuple[str, dict]:
        """The store's key and the readable description of what it covers."""
        records = hashlib.blake2b(digest_size=16)
        for r in data.records:
            st = os.stat(r.path)
            records.update(f"{r.path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        describe = {
            "backbone": model.config["backbone"],
            "split": {"transfer": self.split.mode, "unfreeze_last": self.split.unfreeze_last, "cut": self.split.cut, "shape": list(shape)},
            "frozen_weights": self.split.weights_hash(),
            "input": model.input_config,
            "align": data.align,
            "augment": {**asdict(data.augment), "on": data.augment_on, "views": self.views, "seed": VIEW_SEED},
            "records": {"n": len(data.records), "hash": records.hexdigest()},
            **({"precision": "bf16"} if bf16 else {}),
        }
        key = hashlib.blake2b(json.dumps(describe, sort_keys=True).encode(), digest_size=16).hexdigest()
        return key, describe

    # ---- fill and swap ------------------------------------------------------------------------------------------
    def attach(self, trainer, data, live_validation: bool = False) -> None:
        """Fills the store for this fit's faces (rank 0; the others wait) and swaps ``data.datasets["train"]`` (and
        ``"val"`` unless ``live_validation``, e.g. for flip TTA, which needs the images) for stored-activation ones."""
        model = trainer.lightning_module.model
        start = time.perf_counter()
        row_of = {id(r): i for i, r in enumerate(data.records)}
        train, val = data.datasets["train"], data.datasets["val"]
        train_rows = np.array([row_of[id(r)] for r in train.records], dtype=np.int64)
        val_rows = np.array([row_of[id(r)] for r in val.records], dtype=np.int64)
        # a bf16 recipe fills in bf16 autocast, as its live forward pass would run (2.3x the float32 speed on this CPU)
        bf16 = "bf16" in str(getattr(trainer, "precision", ""))
        sources = _Sources(model, data, self.split, VIEW_SEED, bf16)
        shape = sources.shape()
        key, describe = self.key(model, data, shape, bf16)
        store = FeatureStore(store_root(self.folder), key, len(data.records), self.views, shape, describe)
        needed = {0: train_rows if live_validation else np.union1d(train_rows, val_rows)}
        needed.update({v: train_rows for v in range(1, self.views)})
        computed = 0
        if trainer.is_global_zero:
            store.open()
            computed = store.fill(needed, sources.compute, chunk=data.batch_size, progress=trainer.progress_bar_callback is not None)
            store.close()
        trainer.strategy.barrier("feature-store")
        store.state = np.load(store.folder / "state.npy")
        if any((store.state[v, rows] == MISSING).any() for v, rows in needed.items()):
            raise RuntimeError(f"feature store {store.folder}: rows this fit needs are missing after the fill")
        self.store = store
        data.datasets["train"] = StoreDataset(train.records, store.folder, train_rows, self.views, store.state, data.sources)
        if not live_validation:
            data.datasets["val"] = StoreDataset(val.records, store.folder, val_rows, 1, store.state, data.sources)
        data.batch_augment = None  # the stored views are the augmentation
        self.stats = {"folder": str(store.folder), "faces": len(data.records), "views": self.views, "shape": list(shape),
                      "rows_computed": computed, "store_bytes": store.nbytes(), "fill_seconds": round(time.perf_counter() - start, 1)}
        print(f"feature store {store.folder}: {computed} face-views computed, {store.nbytes() / 1e9:.2f} GB, "
              f"{self.stats['fill_seconds']} s")


class _Sources:
    """The frozen part's input for a store row and view: the evaluation chip for view 0, an augmented training chip
    (the recipe's augmentation, seeded by view and row) for the others."""

    def __init__(self, model: torch.nn.Module, data, split: BackboneSplit, seed: int, bf16: bool = False) -> None:
        self.model, self.data, self.split, self.seed, self.bf16 = model, data, split, seed, bf16
        self._datasets: dict[str, object] = {}
        self._augment = None
        self._shape: tuple[int, ...] | None = None

    def _dataset(self, kind: str):
        if kind not in self._datasets:
            from faceage.data.datasets import FaceDataset
            from faceage.data.transforms import build_eval_transform, build_train_chip_transform, build_train_transform

            cfg, d = self.model.input_config, self.data
            tf = {"eval": lambda: build_eval_transform(cfg), "batch": lambda: build_train_chip_transform(cfg),
                  "sample": lambda: build_train_transform(cfg, d.augment)}[kind]()
            ds = FaceDataset(d.records, tf, cache=d.cache_images, cache_dir=d.cache_dir, sources=d.sources)
            ds.preload()
            self._datasets[kind] = ds
        return self._datasets[kind]

    def shape(self) -> tuple[int, ...]:
        """One row's shape: the frozen part's output for one face."""
        if self._shape is None:
            size = int(self.model.input_config["image_size"])
            self._shape = tuple(self._frozen(torch.zeros(1, 3, size, size)).shape[1:])
        return self._shape

    def _frozen(self, images: torch.Tensor) -> torch.Tensor:
        frozen = self.split.frozen
        modes = {m: m.training for m in frozen.modules()}
        frozen.eval()  # batch-norm statistics frozen: stored values equal a live forward pass
        try:
            device = next(iter(frozen.parameters()), torch.empty(0)).device
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
                return frozen(images.to(device)).float().cpu()
        finally:
            for m, training in modes.items():
                m.train(training)

    def _seed(self, view: int, row: int) -> int:
        return int(np.random.default_rng([self.seed, view, int(row)]).integers(2**31))

    def _image(self, view: int, row: int) -> torch.Tensor | None:
        if view == 0:
            item = self._dataset("eval")[int(row)]
            return None if item is None else item["image"]
        kind = self.data.augment_on
        item = self._dataset(kind)[(int(row), self._seed(view, row))]
        if item is None or kind == "sample":
            return None if item is None else item["image"]
        if self._augment is None:
            from faceage.data.batch_augment import BatchAugment

            self._augment = BatchAugment(self.model.input_config, self.data.augment)
        return self._augment(item["image"][None], seed=self._seed(view, row))[0]  # per face: independent of batching

    def compute(self, view: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(values (k, *shape) float16, ok (k,))`` for ``rows`` of ``view``."""
        images = [self._image(view, r) for r in rows]
        ok = np.array([im is not None for im in images])
        out = np.zeros((len(rows), *self.shape()), dtype=np.float16)
        if ok.any():
            out[ok] = self._frozen(torch.stack([im for im in images if im is not None])).numpy().astype(np.float16)
        return out, ok
