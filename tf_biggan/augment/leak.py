"""Does a random choice among the elements of a finite cyclic group leak? (seed 003, Appendix C.4)

An augmentation that applies group element G_k with probability p_k is invertible in distribution,
so G cannot learn the augmented distribution instead of the real one, exactly when the DFT of
(p_0, ..., p_{N-1}) has no zero (C.4.2, Eqs. 14-18). Uniform choice has a DFT that is zero
everywhere but at frequency 0: every element leaks (Eq. 19). A distribution periodic with period d
(d a proper divisor of N) picks the elements of the subgroup {0, d, 2d, ...} uniformly within each
coset: that subgroup leaks. Other zero patterns leak "conditionally" (only for data with matching
symmetries). Applying uniform elements with probability p < 1 only raises p_0: no zero (C.4.2), and
the condition number 1 / (1 - p) says how close to a leak it is (C.5.1).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

ZERO_TOLERANCE = 1e-9


def check_leak(probabilities: Sequence[float], tolerance: float = ZERO_TOLERANCE) -> Tuple[bool, str]:
    """(leaks, reason) for a probability vector over the elements 0..N-1 of the cyclic group Z_N."""
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size == 0 or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"expected a probability vector (non-negative, summing to 1), got {p.tolist()}")
    n = p.size
    spectrum = np.abs(np.fft.fft(p))
    zeros = [k for k in range(n) if spectrum[k] <= tolerance]
    if not zeros:
        smallest = float(spectrum.min())
        return False, (f"invertible: the DFT of the {n} probabilities has no zero (smallest |DFT| "
                       f"{smallest:.3g}, condition number {1.0 / smallest:.3g})")
    reason = f"the DFT of the probabilities over Z_{n} is zero at frequencies {zeros}"
    period = _period(p)
    if period < n:
        subgroup = list(range(0, n, period))
        if period == 1:
            reason += ("; the distribution is uniform: every element of the group leaks (G may learn any "
                       "transformed version of the data)")
        else:
            reason += (f"; the distribution is periodic with period {period}: the subgroup {subgroup} "
                       f"(order {n // period}) leaks")
    else:
        reason += "; a conditional leak: data symmetric under the matching elements can be learnt transformed"
    return True, reason


def _period(p: np.ndarray) -> int:
    n = p.size
    for d in range(1, n):
        if n % d == 0 and np.allclose(p, np.roll(p, d), atol=1e-12):
            return d
    return n


def applied_with_probability(order: int, probability: float) -> np.ndarray:
    """The element distribution of "with `probability`, a uniformly chosen element of Z_order
    (the identity included); otherwise the identity" (x-flip: order 2, 90-degree rotations: 4)."""
    p = np.full(order, probability / order)
    p[0] += 1.0 - probability
    return p
