"""A backbone cut in two at its transfer-learning split point: the frozen part and the part that trains.

With ``transfer: frozen`` nothing of the backbone trains, so the frozen part is the whole backbone and the trainable
part is the identity. With ``transfer: partial`` the trainable part is the last ``unfreeze_last`` blocks of
``backbone.blocks()`` (the blocks :func:`~faceage.models.backbones.apply_transfer_mode` unfreezes) and everything
after them. The backbone is traced with ``torch.fx`` (modules without children are leaves) and its graph split at
the first call into a trainable block; exactly one tensor may cross the cut (a stage boundary of a ResNet, a block
boundary of SFace or the Cydral net), otherwise the split is refused with the reason.

Both parts are ``torch.fx.GraphModule`` objects that share the backbone's own modules and parameters, so training
the trainable part trains the backbone, and the saved model is the ordinary whole network.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import fx, nn


class _LeafTracer(fx.Tracer):
    """Traces through container modules (including converted ONNX graphs) down to modules without children."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not any(True for _ in m.children()) or super().is_leaf_module(m, module_qualified_name)


@dataclass
class BackboneSplit:
    """The two parts of a backbone.

    Attributes:
        frozen: images ``(B, 3, S, S)`` -> the activation at the cut, ``(B, *shape)``; all its parameters frozen.
        trainable: that activation -> backbone features ``(B, num_features)``.
        cut: name of the activation at the cut (``"features"`` for ``frozen`` transfer).
        mode: the transfer mode (``frozen`` or ``partial``).
        unfreeze_last: blocks in the trainable part (``partial``).
    """

    frozen: nn.Module
    trainable: nn.Module
    cut: str
    mode: str
    unfreeze_last: int

    def weights_hash(self) -> str:
        """Hash of every tensor the frozen part reads (parameters and buffers: names, dtypes, shapes, values)."""
        h = hashlib.blake2b(digest_size=16)
        for name, t in sorted(_tensors(self.frozen).items()):
            t = t.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()


def _tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(module.named_parameters())
    out.update(module.named_buffers())
    return out


def split_backbone(backbone: nn.Module, mode: str, unfreeze_last: int = 0) -> BackboneSplit:
    """Cuts ``backbone`` at its transfer split point and freezes everything the frozen part reads.

    For ``partial``, parameters the frozen part uses that ``apply_transfer_mode`` left trainable (SFace's PReLU slopes
    and the Cydral net's affine scales share one container, unfrozen with the last block) are frozen too: the frozen
    part must not change, or stored activations would go stale.

    Args:
        backbone: a faceage backbone (``blocks()``), its transfer mode already applied.
        mode: ``frozen`` or ``partial``.
        unfreeze_last: blocks trained in ``partial`` mode.

    Returns:
        the :class:`BackboneSplit`.

    Raises:
        ValueError: another mode, or a ``partial`` split point that more than one tensor crosses.
    """
    if mode == "frozen":
        backbone.requires_grad_(False)
        return BackboneSplit(backbone, nn.Identity(), "features", mode, 0)
    if mode != "partial":
        raise ValueError(f"a feature store needs model.backbone.transfer 'frozen' or 'partial', got {mode!r}")
    blocks = backbone.blocks()
    if not 1 <= unfreeze_last < len(blocks):
        raise ValueError(f"a feature store needs 1 <= unfreeze_last < {len(blocks)} (the backbone's blocks), got {unfreeze_last}")
    trainable_ids = {id(m) for block in blocks[-unfreeze_last:] for m in block.modules()}
    try:
        graph = _LeafTracer().trace(backbone)
    except Exception as e:  # noqa: BLE001 - data-dependent control flow: name the backbone, not fx's internals
        raise ValueError(f"feature store: backbone {type(backbone).__name__} cannot be split by torch.fx ({e})") from None
    root = fx.GraphModule(backbone, graph)
    nodes = list(graph.nodes)
    first = next((i for i, n in enumerate(nodes) if n.op == "call_module" and id(root.get_submodule(n.target)) in trainable_ids), None)
    if first is None:
        raise ValueError("feature store: the trainable blocks are never called in the backbone's forward")
    prefix = [n for n in nodes[:first] if n.op not in ("get_attr", "output")]
    in_prefix = set(prefix)
    crossing = {a for n in nodes[first:] for a in n.all_input_nodes if a in in_prefix}
    if len(crossing) != 1 or next(iter(crossing)).op == "placeholder":
        names = ", ".join(sorted(a.name for a in crossing)) or "none"
        raise ValueError(f"feature store: {len(crossing)} tensors ({names}) cross the split before the last {unfreeze_last} "
                         "block(s); choose another unfreeze_last")
    cut = next(iter(crossing))
    frozen = fx.GraphModule(root, _subgraph(nodes[:first], keep=in_prefix, output=cut))
    trainable = fx.GraphModule(root, _subgraph(nodes[first:], keep=None, input=cut))
    frozen.requires_grad_(False)  # shared parameters: this freezes them in the backbone too
    return BackboneSplit(frozen, trainable, cut.name, mode, unfreeze_last)


def _subgraph(nodes: list[fx.Node], keep: set | None, input: fx.Node | None = None, output: fx.Node | None = None) -> fx.Graph:
    """A graph of ``nodes`` (those in ``keep``, or all), the ``get_attr`` nodes they read, ``input`` as placeholder."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    if input is not None:
        env[input] = graph.placeholder(input.name)
    for n in nodes:
        if n.op == "get_attr" or (keep is not None and n not in keep):
            continue
        for a in n.all_input_nodes:
            if a not in env and a.op == "get_attr":
                env[a] = graph.node_copy(a)
        env[n] = graph.node_copy(n, lambda a: env[a])
    if output is not None:
        graph.output(env[output])
    graph.lint()
    return graph
