"""The accuracy contract: when a reduced-precision artifact may stand in for the fp32 model.

One rule for verification, the int8 mixed-precision search, sensitivity and the report:

- Decisions are judged on real images only. The top-1 agreement with fp32 must be *shown* to reach
  the floor: its one-sided 95% lower confidence bound (Wilson score) must. Where the images carry
  the model's own labels, the paired top-1 drop must not be *shown* to exceed its budget: its 95%
  lower bound must not (agreement already bounds the drop; this catches errors that fall on the
  images fp32 gets right). A bound accounts for the sample size: a few images can never pass on
  luck, a good artifact does not fail on chance, and more images make the verdict firmer.
- Numerics are judged by a distribution statistic of per-image cosine similarity (the 5th
  percentile, of real and of noise images separately), not by the worst image of a sample whose
  size changes.
- Random-noise inputs only enter the numerical checks of fp32 and fp16; int8 and weight
  compression are judged on real images alone.
- A model with random weights has no decisions worth keeping (near-tied logits): its int8 is judged
  by the numerical check alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.6449  # one-sided 95% normal quantile


@dataclass(frozen=True)
class Contract:
    """Pass criteria of one precision; None means not judged."""

    name: str
    min_agreement: float | None = None  # 95% lower bound of top-1 agreement on real images
    max_drop_points: float | None = None  # the top-1 drop (points) its 95% lower bound may not exceed
    min_cosine_p5: float | None = None  # 5th percentile of per-image cosine
    max_abs_diff: float | None = None  # every output, every input (fp32: an exact-arithmetic check)
    random_inputs: bool = False  # whether random-noise inputs count for the numerical checks


CONTRACTS = {
    # fp32 computes the same function: an exact numerical check, on any number of images
    "fp32": Contract("fp32", max_abs_diff=1e-3, random_inputs=True),
    "fp16": Contract("fp16", min_agreement=0.98, min_cosine_p5=0.999, random_inputs=True),
    "int8": Contract("int8", min_agreement=0.97, max_drop_points=1.0, min_cosine_p5=0.95),
    "linear8": Contract("linear8", min_agreement=0.98, max_drop_points=0.5, min_cosine_p5=0.99),
    "palettize6": Contract("palettize6", min_agreement=0.97, max_drop_points=1.0, min_cosine_p5=0.98),
    # 4-bit weights are lossy by design: judged by decisions, with a wider numerical margin
    "palettize4": Contract("palettize4", min_agreement=0.93, max_drop_points=2.0, min_cosine_p5=0.9),
}


def contract_for(precision: str) -> Contract:
    """The contract of a precision or weight compression (``fp16``, ``int8``, ``palettize4``, ...)."""
    if precision not in CONTRACTS:
        raise KeyError(f"no accuracy contract for {precision!r}; known: {', '.join(CONTRACTS)}")
    return CONTRACTS[precision]


def wilson_lower(successes: int, n: int, z: float = Z95) -> float:
    """One-sided lower confidence bound of a proportion (Wilson score interval)."""
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def drop_bounds(ref_right: np.ndarray, cand_right: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """One-sided 95% (lower, upper) confidence bounds of the paired top-1 drop in points (fp32 right
    and candidate wrong, minus the reverse), from the variance of paired differences, with a
    continuity correction."""
    n = len(ref_right)
    lost = int((ref_right & ~cand_right).sum())
    gained = int((~ref_right & cand_right).sum())
    d = (lost - gained) / n
    spread = z * math.sqrt(max(lost + gained - n * d * d, 1.0)) / n + 0.5 / n  # >= one discordant pair
    return 100 * (d - spread), 100 * (d + spread)


def min_images(min_agreement: float, z: float = Z95) -> int:
    """The fewest images with which perfect agreement can meet ``min_agreement``."""
    n = 1
    while wilson_lower(n, n, z) < min_agreement:
        n += 1
    return n


def per_image_cosine(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    ref, cand = reference.astype(np.float64), candidate.astype(np.float64)
    return (ref * cand).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1) + 1e-12)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of a whole batch of logits, in dB."""
    noise = float(((reference.astype(np.float64) - candidate) ** 2).sum())
    return float("inf") if noise == 0 else 10 * math.log10(float((reference.astype(np.float64) ** 2).sum()) / noise)


def measure(reference: np.ndarray, candidate: np.ndarray, n_real: int, labels: np.ndarray | None = None) -> dict:
    """Every figure the contract can judge; real images come first (``n_real`` of them).

    ``labels`` are the real images' classes when they are the model's own; None otherwise.
    """
    diff = np.abs(reference.astype(np.float64) - candidate)
    cos = per_image_cosine(reference, candidate)
    agree = reference.argmax(1) == candidate.argmax(1)
    real = slice(0, n_real)
    figures = {
        "samples": len(reference), "real_samples": n_real,
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "cosine_p5_random": float(np.percentile(cos[n_real:], 5)) if len(cos) > n_real else None,
        "top1_agreement_all": float(agree.mean()),
        "cosine_p5": float(np.percentile(cos[real], 5)) if n_real else None,
        "cosine_median": float(np.median(cos[real])) if n_real else None,
        "sqnr_db": round(sqnr_db(reference[real], candidate[real]), 2) if n_real else None,
        "top1_agreement": float(agree[real].mean()) if n_real else None,
        "agreement_lower95": wilson_lower(int(agree[real].sum()), n_real) if n_real else None,
    }
    if labels is not None and n_real:
        ref_right = reference[real].argmax(1) == labels
        cand_right = candidate[real].argmax(1) == labels
        figures.update(top1_fp32=float(ref_right.mean()), top1=float(cand_right.mean()),
                       delta_top1_points=100 * float(cand_right.mean() - ref_right.mean()),
                       drop_lower95_points=drop_bounds(ref_right, cand_right)[0])
    return figures


def judge(contract: Contract, figures: dict, random_weights: bool = False) -> list[str]:
    """What ``figures`` misses of ``contract`` (empty when it holds), each a short readable reason."""
    missed = []
    real = figures.get("real_samples") or 0
    if not contract.random_inputs and not real:
        return [f"{contract.name} is judged on real images and there are none: pass --verify-data"]
    if contract.max_abs_diff is not None and figures.get("max_abs_diff", 0) > contract.max_abs_diff:
        missed.append(f"max|diff| {figures['max_abs_diff']:.3g} (needs <= {contract.max_abs_diff})")
    groups = {"real": figures.get("cosine_p5"), "random": figures.get("cosine_p5_random") if contract.random_inputs else None}
    for group, cosine in groups.items():
        if contract.min_cosine_p5 is not None and cosine is not None and cosine < contract.min_cosine_p5:
            missed.append(f"5th-percentile cosine {cosine:.4f} on {group} images (needs >= {contract.min_cosine_p5})")
    if random_weights or not real:
        return missed
    if contract.min_agreement is not None and figures.get("agreement_lower95") is not None \
            and figures["agreement_lower95"] < contract.min_agreement:
        missed.append(f"top-1 agreement {figures['top1_agreement']:.2%} on {real} real images, 95% lower bound "
                      f"{figures['agreement_lower95']:.2%} (needs >= {contract.min_agreement:.0%}"
                      + (f"; {min_images(contract.min_agreement)} images at least" if real < min_images(contract.min_agreement) else "")
                      + ")")
    drop = figures.get("drop_lower95_points")
    if contract.max_drop_points is not None and drop is not None and drop > contract.max_drop_points:
        missed.append(f"top-1 {figures['delta_top1_points']:+.2f} points: the drop exceeds {contract.max_drop_points} "
                      f"points with 95% confidence (lower bound {drop:.2f})")
    return missed
