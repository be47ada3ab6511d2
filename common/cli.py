"""Command-line conventions of every tool: a user mistake is one ``error:`` line on stderr and exit 2."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``error: ... (see --help)``), exit 2."""

    def error(self, message: str) -> None:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def run_cli(command: Callable[[], int | None]) -> int:
    """Run ``command()``; its return value (default 0), or 2 with one ``error:`` line for a UserError."""
    try:
        return command() or 0
    except UserError as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]  # DataLoader workers add a traceback
        print(f"error: {lines[-1]}", file=sys.stderr)
        return 2
