"""Folding into neighbouring layers what needs no op of its own: BatchNorms and norm affines."""
from __future__ import annotations

import torch
from torch import nn

from ..shunted import LayerNorm2d, ShuntedTransformer


@torch.no_grad()
def fold_batchnorms(model: nn.Module) -> None:
    """Fold every eval-mode BatchNorm that follows a conv in a Sequential into that conv (it becomes Identity)."""
    for sequence in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i, (conv, bn) in enumerate(zip(list(sequence)[:-1], list(sequence)[1:])):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                gain = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                bias = bn.bias - bn.running_mean * gain
                if conv.bias is not None:
                    bias = bias + conv.bias * gain
                conv.weight.mul_(gain.reshape(-1, 1, 1, 1))
                conv.bias = nn.Parameter(bias)
                sequence[i + 1] = nn.Identity()


@torch.no_grad()
def fold_affine(norm: LayerNorm2d, consumers: list[nn.Conv2d | nn.Linear]) -> None:
    """Move ``norm``'s weight and bias into the layers that read its output (all of them), leaving
    it an identity affine: W (gamma n + beta) + b = (W gamma) n + (b + W beta), exact for unpadded
    convs and linear layers."""
    if any(isinstance(layer, nn.Conv2d) and any(layer.padding) for layer in consumers):
        raise ValueError("a padded conv reads zeros where the norm's bias would be; cannot fold into it")
    gamma, beta = norm.weight.flatten(), norm.bias.flatten()
    for layer in consumers:
        shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
        extra_bias = (layer.weight * beta.reshape(shape)).flatten(1).sum(1)
        layer.weight.mul_(gamma.reshape(shape))
        layer.bias.add_(extra_bias)
    norm.weight.fill_(1.0)
    norm.bias.zero_()


def fold_norm_affines(model: ShuntedTransformer) -> list[LayerNorm2d]:
    """Fold the affine of the norms that feed only linear layers: each block's two norms, and the
    last stage's norm into the head (the mean pool between them is linear). Attention scales must
    be folded first. Returns those norms, which then need no affine."""
    pairs = [(model.stages[-1].norm, [model.head])]
    for block in (b for stage in model.stages for b in stage.blocks):
        pairs += [(block.norm1, block.attn.input_layers()), (block.norm2, [block.mlp.fc1])]
    for norm, consumers in pairs:
        fold_affine(norm, consumers)
    return [norm for norm, _ in pairs]
