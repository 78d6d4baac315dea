"""Inference engines: PyTorch (any ``AgeModel``) and ONNX Runtime (an exported graph, no torch import), and the
``auto`` choice between them (:func:`resolve_engine`).

Both take a float32 batch ``(B, 3, S, S)`` and return NumPy ``{"age": (B,), "distribution": (B, K)?,
"gender_prob": (B,)?}``, with mirrored-image averaging when the model config asks for it (``tta_flip``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceage.models.files import CONFIG_NAME, ONNX_NAME, export_dir

ENGINES = ("auto", "torch", "onnx")


DEVICES = ("cpu", "cuda")


def onnx_cuda_available() -> bool:
    """Whether onnxruntime here can run on a GPU (the ``onnxruntime-gpu`` build, with its CUDA provider)."""
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def check_device(device: str) -> None:
    """Raises ``ValueError`` (one line) for an unknown device name."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def resolve_engine(model, engine: str = "auto", device: str = "cpu") -> str:
    """``"torch"`` or ``"onnx"`` for ``engine``; ``"auto"`` picks ONNX Runtime when ``model`` is a path to a
    ``.onnx`` file or to a model directory holding ``model.onnx`` (``None``: the bundled model, which has one), and
    PyTorch otherwise (a checkpoint, a model object, a directory without a graph).

    On 2 cores, 500 aligned chips with the bundled model: torch 9.6 s and 1.07 GB peak RSS, onnx 1.8 s and 124 MB
    (``/usr/bin/time -v faceage predict DIR --no-detect``), so ``auto`` is the default of ``faceage predict``.
    With ``device="cuda"``, ``auto`` takes torch when onnxruntime has no CUDA provider (the CPU-only build)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    check_device(device)
    if engine != "auto":
        return engine
    if device == "cuda" and not onnx_cuda_available():
        return "torch"
    if model is None:
        from faceage.models.pretrained import bundled_model_dir

        model = bundled_model_dir()
    if not isinstance(model, (str, Path)) and not hasattr(model, "__fspath__"):
        return "torch"
    path = Path(model)
    if path.suffix == ".onnx" and path.is_file():
        return "onnx"
    if path.suffix == ".safetensors":
        path = path.parent
    return "onnx" if path.is_dir() and (path / ONNX_NAME).is_file() else "torch"


class TorchEngine:
    """Runs an ``AgeModel`` with PyTorch on ``device``."""

    def __init__(self, model, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        from faceage.models.outputs import InferenceWrapper

        check_device(device)
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device cuda: CUDA is not available to torch {torch.__version__} here (no GPU, or a CPU-only build); use --device cpu")
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

    def __init__(self, model_dir: str | Path, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        check_device(device)
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if not onnx_cuda_available():
                raise ValueError(f"--device cuda: onnxruntime {ort.__version__} here has no CUDAExecutionProvider (install "
                                 "onnxruntime-gpu), or use --engine torch / --device cpu")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        self.device = device

        path = Path(model_dir)
        self.source = path  # what the user named; Grad-CAM loads the PyTorch weights from it
        onnx_path = path if path.suffix == ".onnx" else export_dir(path) / ONNX_NAME
        if not onnx_path.exists():
            raise FileNotFoundError(f"{onnx_path}: no ONNX graph; write one with `faceage export --format onnx {model_dir}`")
        from faceage.models.config import read_model_config

        self.config = read_model_config(onnx_path.parent / CONFIG_NAME)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # idle ORT threads must not spin: on small machines they would steal the cores that decode the next images
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(None, {self.input_name: batch})
        return dict(zip(self.output_names, outs))
