"""Deploy forms: the model rewritten for one backend, computing the same function.

``deploy_form(model, backend, input_size)`` returns a new module (the argument is untouched) in
eval mode, with what needs no op of its own folded into the convs, the attentions specialised to
``input_size`` and the norms in the backend's form; ``float_in_int8(deploy_model)`` names the
modules int8 quantization should keep float.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from ..shunted import ShuntedTransformer, check_input_size
from .attention import collapse_single_tokens, few_reshapes, float_in_int8, fold_attention_scales
from .centring import centre_stream
from .folding import fold_batchnorms, fold_norm_affines
from .norms import MEANS, NormForm, swap_norms

__all__ = ["BACKENDS", "Recipe", "deploy_form", "float_in_int8", "rewrite"]


@dataclass(frozen=True)
class Recipe:
    """What a deploy model folds and how it computes its norms."""

    fold_norms: bool = True  # the affine of norms feeding only linear layers moves into them
    norm_means: str = "mean"  # channel statistics as "mean", "conv" or fused "last_axis" (norms.MEANS)
    centred_stream: bool = False  # every norm reads a channel-centred input (centring.py)
    few_reshapes: bool = False  # attention heads split with one reshape per tensor (attention.py)

    def __post_init__(self):
        if self.norm_means not in MEANS:
            raise ValueError(f"unknown norm_means {self.norm_means!r}; use one of {', '.join(MEANS)}")


RECIPES = {
    # ONNX Runtime fuses a channels-last LayerNormalization and cancels its transposes.
    "onnx": Recipe(norm_means="last_axis"),
    # XNNPACK runs norms op by op: channel means as convs, none of them on a norm's input.
    "xnnpack": Recipe(norm_means="conv", centred_stream=True),
    # Core ML fuses whole norms, so folding their affine into the next layers gains nothing; every
    # reshape stays a layout op in its program.
    "coreml": Recipe(fold_norms=False, few_reshapes=True),
    # ExecuTorch without XNNPACK or with its Core ML delegate, and other runtimes.
    "portable": Recipe(),
}
BACKENDS = tuple(RECIPES)


def deploy_form(model: ShuntedTransformer, backend: str, input_size: int) -> ShuntedTransformer:
    """``model`` as ``backend`` runs it best at ``input_size`` x ``input_size`` (see RECIPES)."""
    if backend not in RECIPES:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return rewrite(model, RECIPES[backend], input_size)


@torch.no_grad()
def rewrite(model: ShuntedTransformer, recipe: Recipe, input_size: int) -> ShuntedTransformer:
    """A copy of ``model`` rewritten by ``recipe``, each step keeping its function: BatchNorms and
    attention scales folded, norm affines folded (if the recipe says so), attentions that see one
    K/V token at ``input_size`` collapsed (the copy then runs only at that size), the residual
    stream centred (if the recipe says so), every norm swapped for its deploy form, and last the
    attentions' head splits rewritten with fewer reshapes (if the recipe says so)."""
    check_input_size(input_size)
    deploy = copy.deepcopy(model).eval()
    fold_batchnorms(deploy)
    fold_attention_scales(deploy)
    bare = fold_norm_affines(deploy) if recipe.fold_norms else []
    collapse_single_tokens(deploy, input_size)
    centred, stream_starts = centre_stream(deploy) if recipe.centred_stream else ([], [])
    swap_norms(deploy, lambda norm: NormForm(recipe.norm_means, affine=norm not in bare,
                                             centred_input=norm in centred, centre_output=norm in stream_starts))
    if recipe.few_reshapes:
        few_reshapes(deploy)
    return deploy.eval()
