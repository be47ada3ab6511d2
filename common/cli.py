"""Command-line conventions of every tool: a user mistake is one ``error:`` line on stderr and exit 2;
SIGINT/SIGTERM undo what the run registered (:func:`on_failure`), print one line and exit 130/143;
``--verbose`` lets the runtimes and exporters print their own logs (common/quiet.py)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable

from .errors import UserError

VERBOSE_ENV = "SHUNTED_EDGE_VERBOSE"  # an environment variable, so worker processes inherit it
_undo: list[Callable[[], None]] = []


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``error: ... (see --help)``), exit 2, with ``--verbose``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_argument("--verbose", action="store_true",
                          help="show the runtimes' and exporters' own logs and warnings")

    def parse_known_args(self, args=None, namespace=None):
        parsed, rest = super().parse_known_args(args, namespace)
        if getattr(parsed, "verbose", False):
            os.environ[VERBOSE_ENV] = "1"
        return parsed, rest

    def error(self, message: str) -> None:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


class Terminated(BaseException):
    """SIGTERM arrived; unwinds like KeyboardInterrupt (SIGINT), so ``finally`` blocks still clean up."""


_signals: list[int] = []  # received while the command ran: an exception that follows is their doing


def on_failure(undo: Callable[[], None]) -> None:
    """Call ``undo`` if the running command fails or is interrupted (it removes what the run created)."""
    _undo.append(undo)


def _interrupt(signum, frame) -> None:
    _signals.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


@contextmanager
def _handled_signals(handler):
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _undo_all() -> None:
    with _handled_signals(signal.SIG_IGN):
        while _undo:
            _undo.pop()()


def run_cli(command: Callable[[], int | None]) -> int:
    """Run ``command()``: its return value (default 0); 2 and one ``error:`` line for a UserError;
    130/143 and one line for SIGINT/SIGTERM, whatever exception a library made of them. A run that
    does not return 0 is undone (:func:`on_failure`); any other exception keeps its traceback."""
    _undo.clear()
    _signals.clear()
    code = 1  # while an unexpected exception propagates
    try:
        with _handled_signals(_interrupt):
            code = command() or 0
    except BaseException as err:
        signum = _signals[0] if _signals else signal.SIGINT if isinstance(err, KeyboardInterrupt) else None
        if signum is not None:
            print(f"error: interrupted by {signal.Signals(signum).name}; partial files removed", file=sys.stderr)
            code = 128 + signum
        elif isinstance(err, UserError):
            lines = str(err).strip().splitlines() or [type(err).__name__]  # DataLoader workers add a traceback
            print(f"error: {lines[-1]}", file=sys.stderr)
            code = 2
        else:
            raise
    finally:
        if code:
            _undo_all()
        _undo.clear()
    return code
