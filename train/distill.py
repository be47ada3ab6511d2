"""Knowledge distillation from a trained teacher that sees each image and its mirror.

The teacher scores exactly the images the student is trained on (augmented, CutMix-mixed), so its
soft targets describe each view ("consistent teaching", Beyer et al., CVPR 2022). Averaging its
probabilities over the image and its left-right mirror makes it a stronger teacher than itself for
data whose labels do not change under a flip, which the crop-flip augmentation already assumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Teacher:
    """A frozen ``model`` whose flip-averaged, ``temperature``-softened probabilities the student
    is pulled towards with weight ``weight`` (the labels' loss keeps ``1 - weight``)."""

    model: nn.Module
    weight: float
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.weight < 1 or self.temperature <= 0:
            raise ValueError(f"distillation needs 0 < weight < 1 and temperature > 0, "
                             f"got {self.weight}, {self.temperature}")
        self.model.eval().requires_grad_(False)

    @torch.no_grad()
    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """Mean softened probabilities over ``images`` and their mirrors, (N, classes), float32."""
        logits = self.model(torch.cat([images, images.flip(-1)])).float()
        return F.softmax(logits / self.temperature, dim=1).view(2, len(images), -1).mean(0)

    def loss(self, student_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """KL(targets || student) at the temperature, scaled by its square (Hinton et al., 2015) so
        that gradients keep their size whatever the temperature."""
        log_probs = F.log_softmax(student_logits.float() / self.temperature, dim=1)
        return F.kl_div(log_probs, targets, reduction="batchmean") * self.temperature ** 2

    def mix(self, labels_loss: torch.Tensor, student_logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The training loss: the labels' loss and the teacher's, weighted."""
        return (1 - self.weight) * labels_loss + self.weight * self.loss(student_logits, self.targets(images))
