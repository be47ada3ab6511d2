"""Per-unit int8 sensitivity, and the mixed precision the accuracy contract asks for (the library;
the command line is quantize/rank_units.py).

A unit is a stage's entry (patch embedding), a block's attention or MLP, or the head. The model is
quantized once (PT2E, XNNPACK's int8 scheme, simulated in PyTorch) on one calibration set; each
unit's error is then measured by letting only that unit read quantized values (``only_within``),
against one fp32 pass over real images. Units are ranked by the error they add per share of the
model's multiply-accumulates they would keep float (cheap, harmful units first); mixed precision
keeps units float in that order until the simulated logits meet the accuracy contract
(common/contract.py). Converters run the same ranking when all-int8 misses the contract.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from common.contract import contract_for, judge, measure, min_images, sqnr_db
from quantize.pt2e import batch_for, only_within, quantize_pt2e, whole_batches, xnnpack_quantizer



def units(model: torch.nn.Module) -> list[str]:
    """Module names of the quantization units, in network order (those the model has)."""
    names = []
    for i, stage in enumerate(model.stages):
        names.append(f"stages.{i}.entry")
        for j in range(len(stage.blocks)):
            names += [f"stages.{i}.blocks.{j}.attn", f"stages.{i}.blocks.{j}.mlp"]
    names.append("head")
    present = dict(model.named_modules())
    return [name for name in names if name in present]


def mac_shares(model: torch.nn.Module, size: int, names: list[str]) -> dict[str, float]:
    """Each unit's share of the model's multiply-accumulates (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    counts = {key.partition(".")[2]: sum(value.values()) for key, value in counter.get_flop_counts().items()}
    total = max(counter.get_total_flops(), 1)
    return {name: counts.get(name, 0) / total for name in names}


def padded_logits(model, images: np.ndarray) -> np.ndarray:
    """Logits in batches of the simulation batch (the last one padded: simulated graphs are static)."""
    with torch.no_grad():
        return np.concatenate([model(padded).numpy()[:real] for padded, real in
                               whole_batches(images, batch_for(images.shape[-1]))])


@dataclass
class UnitFigures:
    unit: str
    sqnr_db: float  # logits' SQNR with only this unit quantized
    top1_agreement: float
    mac_share: float
    priority: float  # noise added per (square root of) MAC share: the search keeps high ones float first


class Study:
    """One calibration and one fp32 pass of a deploy model; each unit's quantization error from them."""

    def __init__(self, deploy_model: torch.nn.Module, calibration: np.ndarray, images: np.ndarray,
                 keep_float: list[str] = (), labels: np.ndarray | None = None):
        self.model, self.images, self.labels = deploy_model.eval(), images, labels
        self.calibration, self.keep_float = calibration, list(keep_float)
        self.units = [u for u in units(deploy_model) if u not in keep_float]
        self.example = torch.from_numpy(np.resize(calibration, (batch_for(images.shape[-1]), *calibration.shape[1:])))
        self.graph = quantize_pt2e(deploy_model, self.example, calibration, xnnpack_quantizer(keep_float),
                                   fold_weights=False)
        self.reference = padded_logits(deploy_model, images)

    def logits(self, quantized: list[str]) -> np.ndarray:
        return padded_logits(only_within(self.graph, quantized), self.images)

    def ranking(self) -> list[UnitFigures]:
        """Units, the ones to keep float first."""
        shares = mac_shares(self.model, self.images.shape[-1], self.units)
        rows = []
        for unit in self.units:
            logits = self.logits([unit])
            db = sqnr_db(self.reference, logits)
            noise = 0.0 if math.isinf(db) else 10 ** (-db / 10)
            rows.append(UnitFigures(unit, round(db, 2), float((logits.argmax(1) == self.reference.argmax(1)).mean()),
                                    round(shares[unit], 5), noise / math.sqrt(max(shares[unit], 1e-4))))
        return sorted(rows, key=lambda r: -r.priority)

    def mixed_precision(self, ranking: list[UnitFigures], kind: str = "int8") -> dict:
        """Keep units float in ranking order until the simulated logits meet the contract."""
        order = [r.unit for r in ranking]
        steps = []
        for k in range(len(order) + 1):
            figures = measure(self.reference, self.logits(order[k:]), len(self.images), self.labels)
            missed = judge(contract_for(kind), figures)
            steps.append({"float_units": order[:k], "top1_agreement": figures["top1_agreement"],
                          "agreement_lower95": round(figures["agreement_lower95"], 4),
                          "cosine_p5": round(figures["cosine_p5"], 5), "missed": missed})
            if not missed:
                break
        return {"float_units": steps[-1]["float_units"], "holds": not steps[-1]["missed"], "steps": steps}


def ranking_table(rows: list[UnitFigures]) -> str:
    from common.text_table import text_table
    return text_table(["unit", "SQNR dB (only it int8)", "top-1 agreement", "MAC share", "priority"],
                      [[r.unit, f"{r.sqnr_db:.1f}", f"{r.top1_agreement:.1%}", f"{r.mac_share:.1%}", f"{r.priority:.3g}"]
                       for r in rows], right_from=1)


def too_small(n: int, kind: str = "int8") -> str | None:
    """Why ``n`` held-out images cannot settle the contract, or None."""
    needed = min_images(contract_for(kind).min_agreement)
    if n < needed:
        return (f"only {n} held-out images: even perfect agreement cannot show >= "
                f"{contract_for(kind).min_agreement:.0%} with 95% confidence below {needed} images; the figures "
                f"below are indicative only")
    return None


def as_json(rows: list[UnitFigures], mixed: dict) -> dict:
    return {"units": [asdict(r) for r in rows], "mixed_precision": mixed}


def build_study(checkpoint: Path | None = None, variant: str | None = None, data: str | None = None,
                calib_size: int | None = None, held_out: int = 1000) -> Study:
    """A model in its XNNPACK deploy form, calibrated on ``data`` (default: its own dataset), with up to
    ``held_out`` real images calibration did not take.

    Args:
        checkpoint: weights; default: the shipped model, unless ``variant`` (random weights) is given.
        calib_size: calibration images (default: as the converters take).
    """
    from common.defaults import SHIPPED_CHECKPOINT
    from data import DataError, model_labels
    from model import create_model
    from model.deploy import deploy_form, float_in_int8
    from quantize.calibration import calibration_batch, held_out_images
    if held_out < 1:
        raise DataError(f"--held-out must be >= 1, got {held_out}")
    checkpoint = checkpoint or (None if variant else SHIPPED_CHECKPOINT)
    model = create_model(variant, checkpoint_path=checkpoint).eval()
    source = data or model.meta.get("dataset")
    if source is None:
        raise DataError("pass --data (cifar10, fashion-mnist or an image folder with class sub-folders)")
    calibration = calibration_batch(source, model.meta, calib_size)
    images, labels, classes = held_out_images(source, model.meta["preprocess"], held_out, len(calibration), 0)
    deploy = deploy_form(model, "xnnpack", model.meta["input_size"])
    if not images:
        raise DataError(f"{source} has no images left for judging after calibration took {len(calibration)}; "
                        f"pass a larger --data or a smaller --calib-size")
    return Study(deploy, calibration, torch.stack(images).numpy(),
                 float_in_int8(deploy), model_labels(labels, classes, model.meta))
