"""Per-unit quantization sensitivity and automatic mixed precision.

    python quantize/sensitivity.py                               # the shipped default model
    python quantize/sensitivity.py --checkpoint C --max-drop 0.5 --output sens.json

A unit is the stem, a stage's downsampling entry, one Transformer block or the head. For each
unit, only that unit is quantized (PT2E, XNNPACK's int8 scheme, simulated in PyTorch) and the
logits are compared with fp32 on held-out images: SQNR in dB and top-1 agreement. Mixed
precision then keeps the most sensitive units in float until the top-1 drop on labelled
held-out images is within ``--max-drop`` points; converters take the result as --float-modules.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from tqdm import tqdm

from common.defaults import SHIPPED_CHECKPOINT
from data import DataError, build_dataset
from model import CheckpointError, create_model
from model.shunted import xnnpack_form
from quantize.calibration import calibration_batch
from quantize.pt2e import quantize_pt2e, xnnpack_quantizer



def units(model: torch.nn.Module) -> list[str]:
    """Module names of the quantization units, in network order."""
    names = []
    for i, stage in enumerate(model.stages):
        names.append(f"stages.{i}.entry")
        names += [f"stages.{i}.blocks.{j}" for j in range(len(stage.blocks))]
    return names + ["head"]


def _logits(model, images: np.ndarray, batch: int) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(images[i:i + batch])).numpy()
                               for i in range(0, len(images), batch)])


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    noise = float(((reference - candidate) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((reference ** 2).sum()) / noise)


class Study:
    """fp32 model, calibration images, held-out images (+ labels) and the fp32 reference on them."""

    def __init__(self, model: torch.nn.Module, calibration: np.ndarray, held_out: np.ndarray, labels: np.ndarray | None):
        self.model = xnnpack_form(model.eval().fuse_for_deploy(input_size=held_out.shape[-1]))
        self.calibration, self.held_out, self.labels = calibration, held_out, labels
        self.example = torch.from_numpy(held_out[:1])
        self.reference = _logits(self.model, held_out, 1)

    def quantized_logits(self, float_modules: list[str]) -> np.ndarray:
        """Logits of the XNNPACK-quantized model with ``float_modules`` (and what the model keeps float) in float."""
        quantizer = xnnpack_quantizer([*float_modules, *self.model.int8_float_modules()])
        return _logits(quantize_pt2e(self.model, self.example, self.calibration, quantizer), self.held_out, 1)

    def only(self, unit: str) -> np.ndarray:
        """Logits with ``unit`` quantized and every other unit in float."""
        return self.quantized_logits([u for u in units(self.model) if u != unit])

    def top1(self, logits: np.ndarray) -> float | None:
        return None if self.labels is None else float((logits.argmax(1) == self.labels).mean())

    def figures(self, logits: np.ndarray) -> dict:
        agree = float((logits.argmax(1) == self.reference.argmax(1)).mean())
        top1, ref = self.top1(logits), self.top1(self.reference)
        return {"sqnr_db": round(sqnr_db(self.reference, logits), 2), "top1_agreement": agree,
                "top1": top1, "delta_top1_points": None if top1 is None else round(100 * (top1 - ref), 2)}


def sensitivity(study: Study) -> list[dict]:
    """Each unit quantized alone, most sensitive (lowest SQNR) first."""
    rows = [{"unit": unit, **study.figures(study.only(unit))} for unit in tqdm(units(study.model), desc="sensitivity")]
    return sorted(rows, key=lambda r: r["sqnr_db"])


def mixed_precision(study: Study, ranking: list[dict], max_drop: float) -> dict:
    """Keep the most sensitive units in float until the top-1 drop is within ``max_drop`` points."""
    if study.labels is None:
        raise DataError("mixed precision needs labelled held-out images (--data with class labels)")
    kept: list[str] = []
    steps = []
    for unit in [None] + [r["unit"] for r in ranking]:
        if unit is not None:
            kept.append(unit)
        figures = study.figures(study.quantized_logits(kept))
        steps.append({"float_modules": list(kept), **figures})
        if -figures["delta_top1_points"] <= max_drop:
            return {"max_drop": max_drop, "float_modules": kept, "result": figures, "steps": steps}
    return {"max_drop": max_drop, "float_modules": kept, "result": steps[-1], "steps": steps,
            "note": "budget not met even with every unit in float"}


def table(rows: list[dict]) -> str:
    lines = ["| unit | SQNR dB | top-1 agreement | delta top-1 (points) |", "|---|---|---|---|"]
    for r in rows:
        delta = "n/a" if r["delta_top1_points"] is None else f"{r['delta_top1_points']:+.2f}"
        lines.append(f"| {r['unit']} | {r['sqnr_db']:.1f} | {r['top1_agreement']:.1%} | {delta} |")
    return "\n".join(lines)


def build_study(checkpoint: Path | None, model_name: str | None, data: str | None, calib_size: int,
                held_out: int) -> Study:
    model = create_model(model_name, checkpoint_path=checkpoint)
    source = data or model.meta.get("dataset")
    if source is None:
        raise DataError("pass --data (fashion-mnist or an image folder with class sub-folders)")
    calibration = calibration_batch(source, model.meta, calib_size)
    dataset = build_dataset(source, "val", model.meta["preprocess"], limit=held_out)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))]).numpy()
    labels = np.asarray([dataset[i][1] for i in range(len(dataset))])
    return Study(model, calibration, images, labels)


def main(argv: list[str] | None = None) -> int:
    from runtime.quiet import quiet_third_party
    quiet_third_party()
    parser = argparse.ArgumentParser(description="Per-unit int8 sensitivity and automatic mixed precision.")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--model")
    parser.add_argument("--data", help="fashion-mnist or an image folder (default: the checkpoint's dataset)")
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=1000, help="validation images to measure on")
    parser.add_argument("--max-drop", type=float, default=0.5, help="top-1 budget in points for mixed precision")
    parser.add_argument("--output", type=Path, help="JSON file (default: <checkpoint>.sensitivity.json)")
    args = parser.parse_args(argv)
    checkpoint = args.checkpoint or (None if args.model else SHIPPED_CHECKPOINT)
    try:
        study = build_study(checkpoint, args.model, args.data, args.calib_size, args.held_out)
    except (DataError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ranking = sensitivity(study)
    mixed = mixed_precision(study, ranking, args.max_drop)
    print(table(ranking))
    print(f"\nall units int8: {mixed['steps'][0]}")
    print(f"mixed precision (max drop {args.max_drop} points): float modules {mixed['float_modules'] or 'none'} "
          f"-> {mixed['result']}")
    output = args.output or Path(f"{checkpoint or args.model}.sensitivity.json")
    output.write_text(json.dumps({"checkpoint": str(checkpoint), "units": ranking, "mixed_precision": mixed}, indent=2))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
