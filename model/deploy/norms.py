"""Channel LayerNorm in the forms backends run best, each computing :class:`LayerNorm2d`'s function.

A deploy norm is a short sequence of steps (centre, normalize, affine, centre again), so that a
rewrite that makes a step unnecessary simply leaves it out (:class:`NormForm`):
- ``"mean"``: ``mean(dim=1)`` statistics, as in the plain model;
- ``"conv"``: the channel means as 1x1 convolutions of weight 1/C and the affine as a depthwise
  1x1 conv, ops XNNPACK delegates and runs channels-last (its mean op pools only over H and W,
  and it wraps a (C, 1, 1) multiply or add in two layout transposes), so an ExecuTorch graph is
  not cut at every norm;
- ``"last_axis"``: the fused ``layer_norm`` on a channels-last view (ONNX ``LayerNormalization``);
  ONNX Runtime runs its int8 convs channels-last and cancels the transposes, so each norm is one
  fused op instead of a chain of elementwise ones.

Measured effects: docs/model-deploy-forms.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..shunted import LayerNorm2d

MEANS = ("mean", "conv", "last_axis")


@dataclass(frozen=True)
class NormForm:
    """How a deploy model computes one channel LayerNorm."""

    means: str = "mean"  # one of MEANS
    affine: bool = True  # False once weight and bias moved into the layers that read the norm
    centred_input: bool = False  # the input is channel-centred already: no mean to subtract
    centre_output: bool = False  # the output starts a residual stream kept channel-centred

    def __post_init__(self):
        if self.means not in MEANS:
            raise ValueError(f"unknown channel-norm form {self.means!r}; use one of {', '.join(MEANS)}")


class DeployLayerNorm2d(nn.Sequential):
    """A channel LayerNorm as a sequence of steps; quantizers keep it float by this class name."""


class ChannelMean(nn.Module):
    """Mean over the channel axis, kept as an axis of size 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)


class ConvChannelMean(nn.Module):
    """The channel mean as a 1x1 conv of weight 1/C, plus ``offset`` as its bias if given."""

    def __init__(self, channels: int, offset: float | None = None):
        super().__init__()
        self.register_buffer("weight", torch.full((1, channels, 1, 1), 1.0 / channels), persistent=False)
        self.register_buffer("bias", None if offset is None else torch.full((1,), offset), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


class SubtractChannelMean(nn.Module):
    def __init__(self, mean: nn.Module):
        super().__init__()
        self.mean = mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.mean(x)


class Normalize(nn.Module):
    """A channel-centred input divided by its root mean square over channels (eps added)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, centred: torch.Tensor) -> torch.Tensor:
        return centred * torch.rsqrt((centred * centred).mean(dim=1, keepdim=True) + self.eps)


class ConvNormalize(nn.Module):
    """:class:`Normalize` with the mean square as a conv channel mean whose bias is eps."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.variance = ConvChannelMean(channels, eps)

    def forward(self, centred: torch.Tensor) -> torch.Tensor:
        return centred * torch.rsqrt(self.variance(centred * centred))


class ChannelAffine(nn.Module):
    """Per-channel scale and shift: ``x * weight + bias`` with (C, 1, 1) parameters."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight.clone()), nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class DepthwiseAffine(nn.Module):
    """Per-channel scale and shift as a depthwise 1x1 conv."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.reshape(-1, 1, 1, 1).clone())
        self.bias = nn.Parameter(bias.flatten().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, groups=self.weight.shape[0])


class LastAxisLayerNorm(nn.Module):
    """The fused ``layer_norm`` over the channels of a channels-last view; no affine without weight."""

    def __init__(self, norm: LayerNorm2d, affine: bool):
        super().__init__()
        self.channels, self.eps = norm.weight.shape[0], norm.eps
        self.weight = nn.Parameter(norm.weight.flatten().clone()) if affine else None
        self.bias = nn.Parameter(norm.bias.flatten().clone()) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
        return out.permute(0, 3, 1, 2)


def channel_norm(norm: LayerNorm2d, form: NormForm) -> DeployLayerNorm2d:
    """``norm`` in ``form``; a bare (affine-free) output is centred already, so only an affine one is re-centred."""
    channels = norm.weight.shape[0]
    conv = form.means == "conv"

    def mean() -> nn.Module:
        return ConvChannelMean(channels) if conv else ChannelMean()

    if form.means == "last_axis":  # the fused op computes its own mean: a centred input changes nothing
        steps = [LastAxisLayerNorm(norm, form.affine)]
    else:
        steps = [] if form.centred_input else [SubtractChannelMean(mean())]
        steps.append(ConvNormalize(channels, norm.eps) if conv else Normalize(norm.eps))
        if form.affine:
            steps.append((DepthwiseAffine if conv else ChannelAffine)(norm.weight.detach(), norm.bias.detach()))
    if form.centre_output and form.affine:
        steps.append(SubtractChannelMean(mean()))
    return DeployLayerNorm2d(*steps)


def swap_norms(model: nn.Module, form_of) -> None:
    """Replace every :class:`LayerNorm2d` of ``model`` by ``channel_norm(norm, form_of(norm))``."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, LayerNorm2d):
                setattr(parent, name, channel_norm(child, form_of(child)))
