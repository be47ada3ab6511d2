"""Checkpoints written during training: weights + metadata, with the run's state in ``extra``.

``extra`` holds the completed epoch count, optimizer/scheduler/GradScaler state, every rank's RNG
state, the resolved arguments, the per-epoch history and (with ``--ema``) the weight average, so
``--resume`` continues the run.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from model import CheckpointError, save_checkpoint
from model.checkpoint import FORMAT


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_training_checkpoint(path: Path, model: torch.nn.Module, meta: dict, *, epoch: int,
                             optimizer: torch.optim.Optimizer, scheduler, scaler: torch.amp.GradScaler,
                             rng_states: list[dict], args: dict, history: list[dict],
                             ema: dict[str, torch.Tensor] | None = None) -> Path:
    """Atomically write weights, metadata and everything ``--resume`` needs."""
    extra = {"epoch": epoch, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "scaler": scaler.state_dict(), "rng": rng_states, "args": args, "history": history}
    if ema is not None:
        extra["ema"] = {name: tensor.cpu() for name, tensor in ema.items()}
    return save_checkpoint(path, model, meta, extra=extra)


def save_weights(path: Path, model: torch.nn.Module, meta: dict, dtype: torch.dtype,
                 history: list[dict], args: dict, overwrite: bool = True) -> Path:
    """Weights-only checkpoint (floating tensors stored as ``dtype``; loading casts back to float32);
    without ``overwrite`` a file that appeared at ``path`` meanwhile is kept (OutputError)."""
    stored = copy.deepcopy(model).to(device="cpu", dtype=dtype)
    return save_checkpoint(path, stored, meta, extra={"history": history, "args": args}, overwrite=overwrite)


def read_training_state(path: str | Path) -> dict:
    """The ``extra`` of a training checkpoint plus its ``meta``; CheckpointError if ``path`` is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: {path} not found; pass the last.pt of an earlier run")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling raises many types; all mean "not a checkpoint we wrote"
        raise CheckpointError(f"cannot resume from {path}: not a readable checkpoint ({type(err).__name__})") from None
    extra = obj.get("extra") if isinstance(obj, dict) and obj.get("format") == FORMAT else None
    if not extra or "optimizer" not in extra:
        raise CheckpointError(f"cannot resume from {path}: it holds no training state (only weights); "
                              "use --checkpoint to start a new run from its weights")
    return {**extra, "meta": obj["meta"]}
