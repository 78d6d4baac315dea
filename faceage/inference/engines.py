"""Inference engines: PyTorch (any ``AgeModel``) and ONNX Runtime (an exported graph, no torch import).

Both take a float32 batch ``(B, 3, S, S)`` and return NumPy ``{"age": (B,), "distribution": (B, K)?,
"gender_prob": (B,)?}``, with mirrored-image averaging when the model config asks for it (``tta_flip``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_NAME = "model.onnx"


def export_dir(model: str | Path) -> Path:
    """The folder holding a model's exported graphs (``model.onnx`` + ``config.json``): a model directory itself,
    the folder of a ``.safetensors`` / ``.onnx`` file, and for a checkpoint ``run/checkpoints/last.ckpt`` the folder
    ``run/checkpoints/last/`` beside it (one per checkpoint: ``faceage export`` writes there, the ONNX engine reads
    there)."""
    path = Path(model)
    if path.suffix in (".safetensors", ".onnx"):
        return path.parent
    if path.suffix == ".ckpt" or (path.is_file() and not path.is_dir()):
        return path.with_suffix("")
    return path


class TorchEngine:
    """Runs an ``AgeModel`` with PyTorch on ``device``."""

    def __init__(self, model, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        from faceage.inference.export import InferenceWrapper

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = device
        self.config = model.config
        self.wrapper = InferenceWrapper(model).to(device).eval()
        self.output_names = self.wrapper.output_names

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            outs = self.wrapper(self.torch.from_numpy(batch).to(self.device))
        return {k: v.cpu().numpy() for k, v in zip(self.output_names, outs)}


class OnnxEngine:
    """Runs ``model.onnx`` (from ``faceage export``) with onnxruntime; config from the ``config.json`` beside it."""

    def __init__(self, model_dir: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(model_dir)
        onnx_path = path if path.suffix == ".onnx" else export_dir(path) / ONNX_NAME
        if not onnx_path.exists():
            raise FileNotFoundError(f"{onnx_path}: no ONNX graph; write one with `faceage export --format onnx {model_dir}`")
        from faceage.models.config import read_model_config

        self.config = read_model_config(onnx_path.parent / "config.json")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ORT threads must not spin: on small machines they would steal the cores that decode the next images
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: batch})
        return dict(zip(self.output_names, outs))
