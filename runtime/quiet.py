"""Silence third-party chatter (import warnings, loggers, progress bars) so command-line output stays readable."""
import contextlib
import importlib
import logging
import warnings

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx", "torch._export", "torch.export",
                 "coremltools", "executorch")


def quiet_third_party() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*has not been tested with coremltools.*")


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
