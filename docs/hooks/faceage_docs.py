"""MkDocs hooks for the faceage site.

* Generated pages: the CLI reference from each command's own parser (``faceage COMMAND --help``), one API page per
  package (mkdocstrings over every public module), ``benchmarks/RESULTS.md`` and the bundled model's card, so the
  site always shows what the repository holds.
* A staleness check: every repository path (``faceage/...``, ``configs/...``), dotted module name
  (``faceage.data.detect``), ``faceage COMMAND --option`` line and ``make TARGET`` a page names must exist. A stale
  one is logged as a warning, which fails ``mkdocs build --strict`` (``make test`` runs it).

:func:`stale_references` is also what ``tests/docs/test_docs.py`` runs over ``README.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import shlex
import sys
import warnings
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("mkdocs.hooks.faceage")

LIGHTNING = {"fit", "validate", "test"}  # LightningCLI's commands
# API pages: package -> title; every public module under it gets a section
API_PACKAGES = {"faceage.inference": "Inference", "faceage.data": "Data", "faceage.models": "Models",
                "faceage.evaluation": "Evaluation", "faceage.training": "Training", "faceage.app": "Web app"}
GENERATED = {"results.md": ROOT / "benchmarks" / "RESULTS.md",
             "models/model-card.md": ROOT / "faceage" / "weights" / "default" / "MODEL_CARD.md"}

_PATH = re.compile(r"(?<![\w./~$-])((?:faceage|configs|benchmarks|scripts|tests|docs)/[\w.*/-]*[\w*/])")
_MODULE = re.compile(r"(?<![\w./-])((?:faceage|benchmarks)(?:\.[A-Za-z_]\w*)+)")
_MAKE_INLINE = re.compile(r"`make ([a-z][\w-]*)")
_MAKE_LINE = re.compile(r"^\s*make ([a-z][\w-]*)", re.MULTILINE)
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


# ---- the CLI reference ----------------------------------------------------------------------------------------


@cache
def command_help(command: str) -> str:
    """What ``faceage COMMAND --help`` prints, from the command's own parser (100 columns wide)."""
    from faceage.cli import _run

    out = io.StringIO()
    old_columns, old_argv = os.environ.get("COLUMNS"), sys.argv
    os.environ["COLUMNS"] = "100"
    sys.argv = ["faceage", command, "--help"]  # LightningCLI compares its args with the process's
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                _run(command, ["--help"])
            except SystemExit:
                pass
            except Exception as e:  # noqa: BLE001 - e.g. a missing extra: the reference would be incomplete
                log.warning("faceage %s --help failed: %r", command, e)
    finally:
        sys.argv = old_argv
        if old_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old_columns
    return out.getvalue().rstrip()


def cli_reference() -> str:
    """The CLI reference page: the usage of ``faceage`` and every command's help."""
    from faceage.cli import USAGE

    lines = ["# Command line", "",
             ("Generated from the commands' own argument parsers when the site is built, so it matches the installed "
             "`faceage`. Run `faceage COMMAND --help` for the same text in a terminal."), "",
             "```text", USAGE, "```", ""]
    for command in commands():
        text = command_help(command)
        lines += [f"## faceage {command}", ""]
        if command in LIGHTNING:
            lines += [(f"`faceage {command}` is a LightningCLI: `--config FILE` takes a recipe from `configs/`, and any "
                      "key of it can be overridden on the command line (`--model.head.name coral`). "
                      "`--print_config` prints the whole resolved recipe."), "",
                      f'??? note "faceage {command} --help"', "", "    ```text",
                      *("    " + line if line else "" for line in text.splitlines()), "    ```", ""]
        else:
            lines += ["```text", text, "```", ""]
    return "\n".join(lines)


# ---- the API reference ----------------------------------------------------------------------------------------


def public_modules(package: str) -> list[str]:
    """The modules under ``package`` (subpackages included) whose names do not start with ``_``."""
    base = ROOT.joinpath(*package.split("."))
    names = []
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") for p in parts if p != "__init__"):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
            if ".".join(parts) == package:
                continue
        names.append(".".join(parts))
    return names


def api_page(package: str, title: str) -> str:
    """One API page: the package's docstring, then each public module's public names."""
    lines = [f"# {title}: `{package}`", "", f"::: {package}", "    options:", "      show_root_heading: false",
             "      members: false", ""]
    for module in public_modules(package):
        lines += [f"::: {module}", ""]
    return "\n".join(lines)


def top_level_page() -> str:
    """The names ``import faceage`` offers."""
    return """# `faceage`

::: faceage
    options:
      show_root_heading: false
      members: false

`faceage.Predictor` and `faceage.FaceResult` are
[`faceage.inference.predictor.Predictor`][faceage.inference.predictor.Predictor] and
[`FaceResult`][faceage.inference.predictor.FaceResult]; `faceage.AgeModel`, `load_model`, `create_backbone` and
`create_head` come from [`faceage.models`](api/models.md).
"""


# ---- the staleness check --------------------------------------------------------------------------------------


def _module_exists(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] == "benchmarks":  # scripts run from the repository root (python -m benchmarks.NAME), not installed
        path = ROOT.joinpath(*parts)
        return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if i == len(parts):
            return True
        try:
            obj = importlib.import_module(name)
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            return True
        except Exception:  # noqa: BLE001 - any failure means the name does not resolve
            return False
    return False


def _path_exists(path: str) -> bool:
    path = path.rstrip(".")
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


@cache
def _make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))


def _command_lines(markdown: str) -> list[str]:
    """The ``faceage COMMAND ...`` lines of the fenced code blocks, continuation lines joined, comments dropped."""
    out = []
    for block in _FENCE.findall(markdown):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("faceage "):
                out.append(line.split(" #", 1)[0])
    return out


def commands() -> list[str]:
    """The ``faceage`` commands, in the order of ``faceage --help``."""
    from faceage.cli import COMMANDS

    return list(COMMANDS)


def _has_option(help_text: str, flag: str, lightning: bool) -> bool:
    """Whether ``flag`` is in the help. A LightningCLI lists ``--trainer.logger`` but not the logger's own keys, and
    ``--model`` / ``--data`` but not their classes' keys: there the longest dotted prefix it lists counts."""
    def listed(option: str) -> bool:
        return re.search(re.escape(option) + r"(?![\w.-])", help_text) is not None

    if listed(flag) or not lightning:
        return listed(flag)
    parts = flag.split(".")
    shortest = 1 if parts[0] in ("--model", "--data") else 2
    return any(listed(".".join(parts[:i])) for i in range(len(parts) - 1, shortest - 1, -1))


def _stale_options(line: str) -> list[str]:
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    if len(tokens) < 2 or tokens[1].startswith("-"):
        return []
    command = tokens[1]
    if command not in commands():
        return [f"unknown command `faceage {command}`"]
    problems = []
    for token in tokens[2:]:
        if not token.startswith("--") or token == "--":
            continue
        flag = token.split("=", 1)[0]
        # kfold, crossdata and tune hand the recipe's dotted keys to every fold's, dataset's or trial's `faceage fit`
        checked = "fit" if command in ("kfold", "crossdata", "tune") and "." in flag else command
        if not _has_option(command_help(checked), flag, checked in LIGHTNING):
            problems.append(f"`faceage {command}` has no option `{flag}`")
    return problems


def stale_references(markdown: str) -> list[str]:
    """Repository paths, modules, ``faceage`` command lines and ``make`` targets in ``markdown`` that do not exist."""
    problems = [f"no file `{p}`" for p in sorted(set(_PATH.findall(markdown))) if not _path_exists(p)]
    problems += [f"no module or name `{m}`" for m in sorted(set(_MODULE.findall(markdown))) if not _module_exists(m)]
    targets = set(_MAKE_INLINE.findall(markdown)).union(*(_MAKE_LINE.findall(b) for b in _FENCE.findall(markdown)))
    problems += [f"no make target `{t}`" for t in sorted(targets) if t not in _make_targets()]
    for line in _command_lines(markdown):
        problems += _stale_options(line)
    return problems


# ---- MkDocs events --------------------------------------------------------------------------------------------


def on_files(files, config):
    """Adds the generated pages."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    files.append(File.generated(config, "reference/faceage.md", content=top_level_page()))
    for package, title in API_PACKAGES.items():
        name = package.rsplit(".", 1)[1]
        files.append(File.generated(config, f"reference/api/{name}.md", content=api_page(package, title)))
    for dest, source in GENERATED.items():
        files.append(File.generated(config, dest, content=source.read_text(encoding="utf-8")))
    return files


def on_page_markdown(markdown, page, config, files):
    """Warns (an error under ``--strict``) about every stale reference on the page (the CLI page is the code's own)."""
    if page.file.src_uri == "reference/cli.md":
        return markdown
    for problem in stale_references(markdown):
        log.warning("%s: %s", page.file.src_uri, problem)
    return markdown
