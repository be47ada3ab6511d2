"""Deploy forms: the model rewritten for one backend, computing the same function.

``deploy_form(model, backend, input_size)`` returns a new module, the argument untouched;
``float_in_int8(model)`` names the modules of a deploy model that int8 quantization keeps float.
"""
from __future__ import annotations

import copy

from torch import nn

from .shunted import set_channel_norm, xnnpack_form

BACKENDS = ("onnx", "xnnpack", "coreml", "portable")


def deploy_form(model: nn.Module, backend: str, input_size: int) -> nn.Module:
    """A deep copy of ``model`` in eval mode, folded and specialised to ``input_size`` for ``backend``."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    deploy = copy.deepcopy(model).eval()
    deploy.fuse_for_deploy(fold_norms=backend != "coreml", input_size=input_size)
    if backend == "onnx":
        set_channel_norm(deploy, "last_axis")
    elif backend == "xnnpack":
        xnnpack_form(deploy)
    return deploy


def float_in_int8(model: nn.Module) -> list[str]:
    """Names of the modules an int8 quantizer should leave float in a deploy model."""
    return model.int8_float_modules()
