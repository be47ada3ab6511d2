"""float16 <-> float32 conversions with numpy's bits, without numpy's slow paths.

numpy converts float16 to float32 with a loop that slows down about fourfold on subnormal values,
and float32 to float16 at full speed only when the result is exact or normal: a value it must round
to a float16 subnormal takes about 300 ns instead of 3 (AVX2 AMD EPYC, numpy 2.4). Softmax
probabilities are full of such values. Here float16 -> float32 is a lookup by bit pattern, and
values below float16's normal range are rounded in float32 first, so numpy only ever sees exact ones.
"""
from __future__ import annotations

import numpy as np

from .dtypes import FLOAT16_PATTERNS

F32 = np.float32
_FLOAT32_OF_HALF = FLOAT16_PATTERNS.astype(F32)
_FLOAT32_OF_HALF.flags.writeable = False
SMALLEST_NORMAL = F32(2.0 ** -14)  # of float16; below it the float16 values are multiples of 2**-24
_SUBNORMAL_STEP = F32(0.5)  # 0.5 + x for x < 2**-14 has float32 ulp 2**-24: adding it rounds x to that grid


def to_float32(x: np.ndarray) -> np.ndarray:
    """``x`` as float32 (a new array for float16 input; float32 input is returned as it is)."""
    x = np.asarray(x)
    if x.dtype == np.float16:
        return np.asarray(_FLOAT32_OF_HALF[x.view(np.uint16)])
    return x.astype(F32, copy=False)


def nonnegative_to_float16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` from +0.0 up (infinity and NaN allowed) as float16, with the bits of
    ``x.astype(np.float16)``.

    Below float16's normal range, (x + 0.5) - 0.5 rounds x to a multiple of 2**-24, half to even
    (the parity of the float32 sum's last mantissa bit is that of the multiple), which is the
    float16 subnormal numpy would round x to; that value then converts exactly."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(invalid="ignore"):  # signalling NaNs stay NaNs
        rounded = (x + _SUBNORMAL_STEP) - _SUBNORMAL_STEP
    return np.where(x < SMALLEST_NORMAL, rounded, x).astype(np.float16)
