"""Command-line conventions of train.py and evaluate.py: a user mistake is one line on stderr and exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from data import DataError
from model import CheckpointError

USER_ERRORS = (DataError, CheckpointError, ValueError, OSError)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def run_cli(command: Callable[[list[str] | None], object], argv: list[str] | None) -> int:
    """Run ``command(argv)``: 0 on success, 2 with ``error: ...`` on stderr for a user mistake."""
    try:
        command(argv)
    except USER_ERRORS as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]  # DataLoader workers add a traceback
        print(f"error: {lines[-1]}", file=sys.stderr)
        return 2
    return 0
