"""Silence third-party import chatter (torchao, exporters) so command-line output stays readable."""
import logging
import warnings

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch.onnx", "torch._export", "torch.export",
                 "coremltools", "executorch")


def quiet_third_party() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*has not been tested with coremltools.*")
