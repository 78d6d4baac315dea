"""``faceage predict PATHS --ray [ADDRESS]``: the same predictions as a local run, computed on a Ray cluster with
Ray Data.

    >>> for result in ray_predict_files(files, "local", {"model": "runs/x/model", "engine": "onnx"}):
    ...     print(result.path, [f.age for f in result.faces])      # FileResult, in input order

The inputs become a dataset of paths (``ray.data.from_items``); ``map_batches`` runs :class:`PredictActor` on an
actor pool — each actor builds one :class:`faceage.inference.predictor.Predictor` (detector + engine) when it
starts and reuses it for every batch — and the driver turns the answers back into
:class:`faceage.inference.predictor.FileResult` objects, in input order (``preserve_order``), so that
``faceage predict`` writes them through the same :class:`faceage.inference.output.RowWriter` rows as a local run.

``address``: ``"local"`` (or ``None``) starts a Ray on this machine (``num_cpus`` CPUs); ``"auto"`` joins the
cluster this machine belongs to (``ray start``); ``ray://HOST:10001`` connects a Ray Client; ``HOST:6379`` joins
by GCS address. Already-initialised Ray (``ray.init`` by the caller) is used as it is.

On a cluster, every node must see the input files under the same paths (a shared file system: NFS, a mounted
bucket) and the model directory (or use the bundled model); the paths are made absolute on the driver. Each actor
takes ``num_cpus`` CPUs (default 1) and runs the engine with that many threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from faceage.inference.predictor import FaceResult, FileResult

LOCAL = ("local", None, "")


def encode_result(result: FileResult) -> dict[str, Any]:
    """A :class:`FileResult` as plain values (what actors send back; distributions as lists)."""
    faces = []
    for f in result.faces:
        d = f.to_dict()
        d["box"] = list(d["box"])
        d["distribution"] = None if f.distribution is None else np.asarray(f.distribution, np.float64).tolist()
        d["min_age"] = int(f.min_age)
        faces.append(d)
    return {"path": result.path, "faces": faces, "error": result.error}


def decode_result(data: dict[str, Any], path: str | None = None) -> FileResult:
    """:func:`encode_result`'s inverse (``path`` overrides the stored path)."""
    faces = []
    for d in data["faces"]:
        d = dict(d)
        dist = d.pop("distribution", None)
        min_age = int(d.pop("min_age", 0))
        face = FaceResult(**{**d, "box": tuple(d["box"])})
        if dist is not None:
            face.distribution, face.min_age = np.asarray(dist, np.float64), min_age
        faces.append(face)
    return FileResult(data["path"] if path is None else path, faces, data.get("error"))


class PredictActor:
    """Ray Data callable class: builds one ``Predictor(**predictor_kwargs)`` per actor; each batch of paths ->
    their encoded results (JSON text, one per path, in order)."""

    def __init__(self, predictor_kwargs: dict[str, Any]) -> None:
        from faceage.inference.predictor import Predictor

        self.predictor = Predictor(**predictor_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        import json

        paths = [str(p) for p in batch["path"]]
        results = list(self.predictor.predict_files(paths))  # files only: expand_inputs keeps them as given
        return {"index": [int(i) for i in batch["index"]], "result": [json.dumps(encode_result(r)) for r in results]}


def connect(address: str | None = "local", num_cpus: int | None = None) -> None:
    """``ray.init`` for ``address`` (see the module notes) unless Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
    if address in LOCAL:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def ray_predict_files(paths: Sequence[str], address: str | None = "local", predictor_kwargs: dict[str, Any] | None = None,
                      actors: int | None = None, batch_size: int = 16, num_cpus: float = 1.0) -> Iterator[FileResult]:
    """Files -> one :class:`FileResult` each, in input order, computed on Ray (see the module notes).

    Args:
        paths: image files (already expanded; each keeps the spelling given here in the results).
        address: ``"local"``, ``"auto"``, ``ray://HOST:10001`` or ``HOST:PORT``.
        predictor_kwargs: :class:`Predictor` arguments (``model``, ``engine``, ``detect``, ...); ``threads``
            defaults to ``num_cpus``, ``workers`` to 1.
        actors: largest actor pool (default: the cluster's CPUs / ``num_cpus``).
        batch_size: paths per ``map_batches`` call.
        num_cpus: CPUs reserved by each actor.

    Ray is connected (and the dataset planned) when this is called, so a bad ``address`` raises here, before the
    first result; the results are computed as they are iterated.
    """
    import ray
    import ray.data

    kwargs = dict(predictor_kwargs or {})
    if isinstance(kwargs.get("model"), (str, os.PathLike)) and os.path.exists(kwargs["model"]):
        kwargs["model"] = os.path.abspath(kwargs["model"])
    kwargs.setdefault("threads", max(1, int(num_cpus)))
    kwargs.setdefault("workers", 1)
    connect(address, None)
    if not paths:
        return iter(())
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    size = actors or max(1, int(cpus // max(num_cpus, 1e-9)))
    ds = ray.data.from_items([{"index": i, "path": os.path.abspath(p)} for i, p in enumerate(paths)])
    ds = ds.map_batches(PredictActor, fn_constructor_kwargs={"predictor_kwargs": kwargs}, batch_size=batch_size,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(size, len(paths))),
                        num_cpus=num_cpus)
    return _results(ds, list(paths))


def _results(ds, paths: list[str]) -> Iterator[FileResult]:
    import json

    for row in ds.iter_rows():
        yield decode_result(json.loads(row["result"]), paths[int(row["index"])])
