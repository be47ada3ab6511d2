"""Silence third-party chatter (import warnings, loggers, progress bars, ExecuTorch's C++ log) so
command-line output stays readable; ``--verbose`` (common/cli.py, via the environment) keeps the logs."""
import contextlib
import importlib
import io
import logging
import os
import sys
import warnings

from common.cli import VERBOSE_ENV

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx", "torch._export", "torch.export",
                 "coremltools", "executorch")
NOISY_WARNINGS = (".*has not been tested with coremltools.*",
                  ".*requires gradient. but it's not properly registered as a parameter.*")  # torch.export, folded constants


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_third_party() -> None:
    if verbose():
        return
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    for message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


@contextlib.contextmanager
def native_logs_silenced():
    """stderr (file descriptor 2, where C++ libraries log) goes to /dev/null inside the block, unless verbose."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers
            if type(handler) is logging.StreamHandler]


@contextlib.contextmanager
def output_to(stream):
    """``print`` output, ``sys.stderr`` and the logging handlers that write to it go to ``stream`` inside
    the block. Handlers a library creates inside the block (bound to ``stream``) are moved back to the
    real stderr at its end, so none is left writing to a file the caller is about to close."""
    stderr = sys.stderr
    for handler in _stream_handlers():
        if handler.stream is stderr:
            handler.setStream(stream)
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        for handler in _stream_handlers():
            if handler.stream is stream:
                handler.setStream(stderr)


@contextlib.contextmanager
def prints_silenced():
    """Third-party ``print`` calls (ONNX Runtime's calibrators report their bins) are dropped inside the
    block, unless verbose."""
    if verbose():
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def progress_bars_off(*module_names: str):
    """Within the block, the named modules draw no tqdm progress bars: each module's own name for
    ``tqdm`` (``from tqdm import tqdm [as _tqdm]``) is bound to a disabled tqdm, then restored."""
    from functools import partial

    from tqdm import tqdm
    modules = [importlib.import_module(name) for name in module_names]
    swapped = [(module, attr) for module in modules for attr, value in vars(module).items() if value is tqdm]
    for module, attr in swapped:
        setattr(module, attr, partial(tqdm, disable=True))
    try:
        yield
    finally:
        for module, attr in swapped:
            setattr(module, attr, tqdm)
