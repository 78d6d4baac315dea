"""``faceage fit|validate|test``: the LightningCLI of :mod:`faceage.training.lightning_cli`; a bad config prints
one ``error:`` line and exits with status 2."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """``argv`` starts with the subcommand (``fit``, ``validate`` or ``test``)."""
    from faceage.training.lightning_cli import run_cli

    run_cli(argv)
    return 0
