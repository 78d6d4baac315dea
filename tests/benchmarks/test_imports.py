"""Every benchmark and study imports as a module of the ``benchmarks`` package (``python -m benchmarks.<name>``) and
has a ``main``; none runs here (they take minutes to hours)."""

import importlib
import pkgutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = [
    f"{package}.{m.name}"
    for package in ("benchmarks", "benchmarks.studies")
    for m in sorted(pkgutil.iter_modules([str(REPO.joinpath(*package.split(".")))]), key=lambda m: m.name)
    if not m.ispkg and m.name != "common"
]


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_imports_and_has_main(name):
    module = importlib.import_module(name)
    assert callable(getattr(module, "main", None)), f"{name} has no main()"
    assert (module.__doc__ or "").strip(), f"{name} has no docstring"
