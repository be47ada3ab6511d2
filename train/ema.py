"""An exponential moving average (EMA) of a model's weights, updated after every optimizer step.

After each step every floating tensor of the average moves ``1 - decay`` of the way to the
model's (``avg += (1 - decay) * (current - avg)``); integer buffers are copied. With decay 0.9995
the average spans about the last 2,000 steps (1 / (1 - decay)): it smooths the noise of the last
epochs of a schedule, which often scores better than the last step's weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The EMA of ``model``'s parameters and buffers (``model`` is the unwrapped module that trains)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay, self.source = decay, model
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        current = self.source.state_dict()
        for name, average in self.model.state_dict().items():
            if average.is_floating_point():
                average.lerp_(current[name].to(average.dtype), 1 - self.decay)
            else:
                average.copy_(current[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
