"""Automatic mixed precision: when an all-int8 artifact misses the accuracy contract, keep the
fewest units float, in the order quantize/sensitivity.py ranks them, until the contract holds.

The ranking is simulated once (one calibration, one fp32 pass); every candidate is then a real
artifact of the format, judged by the real runtime on the verification images. The number of
float units is searched by doubling, then bisection, so the smallest count that holds in ranking
order is found with few builds.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from quantize.sensitivity import Study

from .manifest import remove

RANK_IMAGES = {64: 256}  # real images the ranking simulates, by input size (larger inputs: 64)


class SearchFailed(Exception):
    """Even the search found no artifact that meets the contract; the message says what to try."""


def _rank_images(size: int) -> int:
    return next((n for limit, n in RANK_IMAGES.items() if size <= limit), 64)


def rank_units(job) -> list:
    """The deploy model's units, the ones to keep float first (quantize.sensitivity.Study)."""
    images = job.images.inputs[:min(job.images.n_real, _rank_images(job.meta["input_size"]))]
    return Study(job.deploy_model, job.calibration(), images, job.float_modules).ranking()


def summary(figures: dict) -> dict:
    keys = ("top1_agreement", "agreement_lower95", "cosine_p5", "delta_top1_points", "drop_lower95_points", "missed")
    return {k: (round(figures[k], 5) if isinstance(figures.get(k), float) else figures.get(k)) for k in keys}


def search(job, build: Callable[[object, Path], dict], tmp: Path, first: dict) -> tuple[list[str], dict, dict]:
    """Find the fewest float units (ranking order) whose artifact meets the contract.

    ``build(job, path)`` exports and judges one candidate (returns its verification figures); the
    chosen artifact ends up at ``tmp``. Returns (float units, their figures, the search record).
    """
    ranking = rank_units(job)
    order = [row.unit for row in ranking]
    steps = [{"float_units": [], **summary(first)}]
    budget = job.request.search_budget
    results: dict[int, dict] = {0: first}
    paths: dict[int, Path] = {}

    def attempt(k: int) -> bool:
        path = tmp.with_name(f"{tmp.stem}.k{k}{tmp.suffix}")
        candidate = replace(job, request=replace(job.request, float_modules=(*job.request.float_modules, *order[:k])))
        results[k], paths[k] = build(candidate, path), path
        steps.append({"float_units": order[:k], **summary(results[k])})
        return not results[k]["missed"]

    passing, failing = None, 0
    try:
        for k in _doubling(len(order)):
            if len(steps) - 1 >= budget:
                break
            if attempt(k):
                passing = k
                break
            failing = k
        while passing is not None and passing - failing > 1 and len(steps) - 1 < budget:
            middle = (passing + failing) // 2
            if attempt(middle):
                passing = middle
            else:
                failing = middle
        if passing is None:
            raise SearchFailed(_advice(job, steps, len(order)))
        remove(tmp)
        paths.pop(passing).replace(tmp)
        return order[:passing], results[passing], {"ranking": [vars(r) for r in ranking], "steps": steps,
                                                   "budget": budget}
    finally:
        for path in paths.values():
            remove(path)


def _doubling(n: int) -> list[int]:
    """1, 2, 4, ... up to n, n included."""
    counts, k = [], 1
    while k < n:
        counts.append(k)
        k *= 2
    return counts + [n] if n else []


def _advice(job, steps: list[dict], units: int) -> str:
    best = max(steps, key=lambda s: s["agreement_lower95"] or 0)
    tried = len(steps) - 1
    return (f"int8 misses the accuracy contract even with {len(best['float_units'])} of {units} units float "
            f"({tried} candidates tried; best: {'; '.join(best['missed'])}); try more calibration images "
            f"(--calib-size), another --calib-method, more --verify-images, or a larger --search-budget "
            f"(now {job.request.search_budget})")
