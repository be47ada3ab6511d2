"""Optimizer, LR schedule, mixed precision and one training epoch."""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from model.shunted import LayerNorm2d

from .cli import TrainError
from .cutmix import CutMix
from .distill import Teacher
from .distributed import Context, all_reduce_sum
from .ema import WeightAverage

AMP_CHOICES = ("auto", "off", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    """Autocast dtype (None: float32) and memory format of one run."""

    dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def choose(cls, amp: str, device: torch.device) -> "Precision":
        """CUDA: ``auto`` picks bf16 where supported, else fp16, with channels_last. CPU: float32 unless
        ``bf16`` is asked for (faster on CPUs with native bf16: AVX-512 BF16, AMX)."""
        if device.type != "cuda":
            if amp == "fp16":
                raise TrainError("--amp fp16 needs a CUDA GPU; on CPU use --amp bf16, auto or off")
            if amp == "bf16" and not torch.backends.mkldnn.is_available():
                raise TrainError("--amp bf16 on CPU needs PyTorch built with oneDNN; use --amp off")
            return cls(torch.bfloat16 if amp == "bf16" else None, False)
        if amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return cls({"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp], True)

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """A GradScaler, active for float16 only (a pass-through otherwise)."""
        return torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; norms and biases get no weight decay."""
    norms = (LayerNorm2d, nn.BatchNorm2d, nn.LayerNorm)
    no_decay = {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}
    no_decay |= {id(p) for name, p in model.named_parameters() if name.endswith(".bias")}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in no_decay], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Per-step schedule: linear warm-up to the base LR, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return LambdaLR(optimizer, factor)


def non_finite_message(loss: float, step: int, precision: Precision) -> str:
    """What to do when the loss is NaN or inf, instead of training on in vain."""
    hint = ("; compiled bfloat16 graphs gave NaN on an Intel Xeon with AMX (torch 2.13): retry with --amp off "
            "or without --compile" if precision.dtype is torch.bfloat16 else
            "; lower --lr or check the data")
    return f"the training loss became {loss} at step {step + 1} of this epoch, nothing more was learned{hint}"


def train_one_epoch(model: nn.Module, loader, steps: int, *, optimizer: torch.optim.Optimizer,
                    scheduler: LambdaLR, scaler: torch.amp.GradScaler, criterion: nn.Module,
                    precision: Precision, clip_grad: float, ctx: Context, desc: str,
                    cutmix: CutMix = CutMix(0.0), rng: np.random.Generator | None = None,
                    teacher: Teacher | None = None, ema: WeightAverage | None = None) -> dict:
    """Train for ``steps`` batches of ``loader``; mean loss, accuracy (%, against each image's own
    label) and img/s over all processes. ``cutmix`` mixes a share of the batches, drawing from ``rng``;
    a ``teacher`` adds its distillation loss on the same (mixed) images; ``ema`` is updated after
    every step."""
    model.train()
    device = ctx.device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, images
    memory_format = torch.channels_last if precision.channels_last else torch.preserve_format
    bar = tqdm(total=steps, desc=desc, disable=not ctx.is_main, dynamic_ncols=True, mininterval=1.0)
    start = time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        if step == steps:
            break
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        mixed = cutmix(images, targets, rng)  # unmixed (keep 1.0) when this batch is not drawn
        with precision.autocast(device):
            logits = model(mixed.images)
            loss = mixed.loss(criterion, logits)
            if teacher is not None:
                loss = teacher.mix(loss, logits, mixed.images)
        if not torch.isfinite(loss):
            raise TrainError(non_finite_message(loss.item(), step, precision))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update()
        batch = torch.stack([loss.detach().double() * len(targets),
                             (logits.argmax(1) == targets).sum().double(),
                             torch.tensor(len(targets), dtype=torch.float64, device=device)])
        totals += batch
        bar.update()
        if ctx.is_main and (step % 10 == 0 or step + 1 == steps):
            loss_sum, correct, seen = totals.tolist()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}%",
                            lr=f"{scheduler.get_last_lr()[0]:.2e}",
                            img_s=f"{seen * ctx.world_size / (time.perf_counter() - start):.0f}")
    bar.close()
    seconds = time.perf_counter() - start
    loss_sum, correct, seen = all_reduce_sum(totals, ctx).tolist()
    return {"loss": loss_sum / max(seen, 1), "acc": 100 * correct / max(seen, 1),
            "seconds": seconds, "img_s": seen / seconds if seconds > 0 else 0.0}
