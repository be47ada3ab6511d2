"""Progress of long passes of the slow reference engines (Core ML's numpy evaluator, Core AI's Linux
reference path): a verification of 1,000 images at 224 px can take hours there, so such a pass says
how long it expects to take and how far it is, on stderr."""
from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np

NOTICE_AFTER_S = 60  # passes expected to take longer say so
PROBE_IMAGES = 4  # images timed first, for the estimate
STEPS = 10  # progress lines of a long pass


def duration(seconds: float) -> str:
    """``4 s``, ``12 min 5 s``, ``2 h 31 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def run_with_progress(run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, what: str) -> np.ndarray:
    """``run(x)``, in parts when the pass is expected to take over ``NOTICE_AFTER_S``: first an estimate
    from the first ``PROBE_IMAGES`` images, then a line at every tenth of the images."""
    if len(x) <= PROBE_IMAGES:
        return run(x)
    start = time.perf_counter()
    outputs = [run(x[:PROBE_IMAGES])]
    each = (time.perf_counter() - start) / PROBE_IMAGES
    if each * len(x) <= NOTICE_AFTER_S:
        return np.concatenate(outputs + [run(x[PROBE_IMAGES:])])
    print(f"{what}: {len(x)} images at {each:.2f} s each, about {duration(each * len(x))}", file=sys.stderr,
          flush=True)
    step = max(1, len(x) // STEPS)
    for first in range(PROBE_IMAGES, len(x), step):
        outputs.append(run(x[first:first + step]))
        done = min(first + step, len(x))
        if done < len(x):
            left = (time.perf_counter() - start) / done * (len(x) - done)
            print(f"{what}: {done}/{len(x)} images, about {duration(left)} left", file=sys.stderr, flush=True)
    return np.concatenate(outputs)
