"""A channel-centred residual stream, so that no norm subtracts a mean.

A norm's output depends only on its input minus the input's channel mean. The convs that feed a
norm directly (patch embeddings, K/V aggregation) centre their outputs. Each stage's residual
stream is read only by norms, so it is kept centred: its first value (the entry norm's output)
has its channel mean subtracted, and every branch that adds to it (attention output, fc2)
centres its output. Until the norms change form, the model computes the same function.
"""
from __future__ import annotations

import torch
from torch import nn

from ..shunted import LayerNorm2d, ShuntedTransformer, Stem


@torch.no_grad()
def centre_output_channels(conv: nn.Conv2d) -> None:
    """Make a dense conv's output sum to zero over channels at every pixel (subtract the mean
    output filter and the mean bias)."""
    if conv.groups != 1:
        raise ValueError("only a dense conv can centre its output channels")
    conv.weight.sub_(conv.weight.mean(dim=0, keepdim=True))
    if conv.bias is not None:
        conv.bias.sub_(conv.bias.mean())


def centre_stream(model: ShuntedTransformer) -> tuple[list[LayerNorm2d], list[LayerNorm2d]]:
    """Centre every norm's input (a model whose attentions are in a deploy form). Returns the norms
    that now read centred inputs, and the entry norms whose outputs must be centred to start a stream."""
    centred, entries = [], []
    for stage in model.stages:
        entry = stage.entry
        centre_output_channels(entry.patch if isinstance(entry, Stem) else entry.proj)
        entries.append(entry.norm)
        centred += [entry.norm, stage.norm]
        for block in stage.blocks:
            for layer in [*block.attn.output_layers(), block.mlp.fc2]:
                centre_output_channels(layer)
            centred += [block.norm1, block.norm2]
            for branch in block.attn.branches():
                centre_output_channels(branch.reduce)
                centred.append(branch.norm)
    return centred, entries
