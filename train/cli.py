"""Command-line conventions of train.py and evaluate.py (common/cli.py), and their error type."""
from __future__ import annotations

from typing import Callable

from common.cli import Parser, run_cli as run_command
from common.errors import UserError

__all__ = ["Parser", "TrainError", "run_cli"]


class TrainError(UserError):
    """A training or evaluation request that cannot run; the message says what to do."""


def run_cli(command: Callable[[list[str] | None], object], argv: list[str] | None) -> int:
    """Run ``command(argv)``: 0 on success, 2 with ``error: ...`` on stderr for a user mistake."""
    def run() -> int:
        command(argv)
        return 0
    return run_command(run)
