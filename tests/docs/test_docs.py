"""The documentation and the repository's text: the site builds with --strict (no broken link, stale path, module,
command option or API name), the public API has docstrings, the README stays a front door, no module grows past
500 lines, and no text tells how the code was made instead of what it does."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _hooks():
    spec = importlib.util.spec_from_file_location("faceage_docs_hooks", REPO / "docs" / "hooks" / "faceage_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        path = shutil.which(name)
        if path is None:
            pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return str(path)


def test_site_builds_strict(tmp_path):
    """`mkdocs build --strict` turns every warning into a failure: a broken link or anchor, a page left out of the
    nav, a repository path or module a page names that no longer exists, a `faceage` option a command lacks, an API
    name mkdocstrings cannot find."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2, not a warning of ours
    run = subprocess.run([_tool("mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                         capture_output=True, text=True, timeout=600, check=False, env=env)
    problems = [line for line in run.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert run.returncode == 0, "\n".join(problems) or run.stderr[-3000:]
    for page in ("index.html", "reference/cli/index.html", "reference/api/inference/index.html", "results/index.html",
                 "models/model-card/index.html", "tutorials/seed-000-coral/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "--no-detect" in cli and "--over" in cli  # generated from the commands' own parsers


def test_staleness_check_catches_what_it_should():
    """The hook behind the strict build flags a missing file, an unknown module, command or option, and a missing
    make target, and passes the real ones."""
    hooks = _hooks()
    good = """See `faceage/data/detect.py`, `faceage.data.detect.FaceDetector` and `make test`.

```bash
faceage predict photos/ --no-detect --output ages.csv
faceage fit --config configs/default.yaml --trainer.max_epochs 2 --model.head.name coral
faceage kfold --config configs/default.yaml --folds 3 --trainer.max_epochs 2
```
"""
    assert hooks.stale_references(good) == []
    bad = """See `faceage/data/detector_v9.py`, `faceage.data.detect.NoSuchThing` and `make nothing`.

```bash
faceage predict photos/ --no-such-option
faceage fly --high
faceage fit --config configs/default.yaml --trainer.max_epochz 2
```
"""
    problems = hooks.stale_references(bad)
    for expected in ("detector_v9.py", "NoSuchThing", "make target `nothing`", "--no-such-option", "`faceage fly`",
                     "--trainer.max_epochz"):
        assert any(expected in p for p in problems), (expected, problems)


def test_readme_is_a_front_door_with_current_references():
    """At most 120 lines; every path, module, command option and make target it names exists; its image is small."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    assert _hooks().stale_references(text) == []
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text) + re.findall(r'<img src="([^"]+)"', text)
    assert images
    for image in images:
        path = REPO / image
        assert path.is_file() and path.stat().st_size < 200_000, image


def test_public_api_has_docstrings():
    """Every public module, package, class and function of faceage has a docstring (ruff's pydocstyle rules; a
    command's `main` is documented by its parser, which the CLI reference shows)."""
    run = subprocess.run([_tool("ruff"), "check", "--isolated", "--select", "D100,D101,D103,D104,D419",
                          "--config", 'lint.per-file-ignores = {"faceage/cli/*.py" = ["D103"]}',
                          "--output-format", "concise", "faceage"], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_no_module_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in (REPO / "faceage").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, long


# how a text tells the story of its making rather than the product: numbered or named working sessions
SESSION_TALK = re.compile(r"\b(?:(?:first|second|third|fourth|fifth|sixth|this|next|previous|last|working|"
                          r"same|earlier|later) sessions?\b|sessions? of 20\d\d|for lack of (?:session )?time|"
                          r"sitting)", re.IGNORECASE)


def test_no_text_speaks_of_working_sessions():
    """Code, comments, docs, configs and benchmark records describe the product, not the work that made it; when
    something was measured is the record's date. (pytest's and ONNX Runtime's sessions are code, not talk.)"""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                            text=True, check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    suffixes = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".json", ".cfg", ""}
    found = []
    for name in listed.stdout.splitlines():
        path = REPO / name
        if path.suffix not in suffixes or not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        if name == "tests/docs/test_docs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if SESSION_TALK.search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
