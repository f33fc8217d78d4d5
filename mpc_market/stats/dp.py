"""Exact discrete Laplace noise for released aggregates (optional differential privacy).

Sampler: Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential Privacy" (2020),
Algorithms 1 and 2: only integer and rational arithmetic on ``secrets`` randomness, so there is
no floating-point leak. P[Y = y] is proportional to exp(-|y| / scale).

Budget: one meter's reading in one slot changes that slot's import and export fields by at most
``max_reading_wh`` each. Noise of scale ``max_reading_wh / epsilon`` on every released field
makes each (group, slot) pair 2*epsilon-DP for one meter-slot, and one meter's whole day
(2 * slots fields) at most 2 * slots * epsilon-DP per operator key (basic composition; releases
under two keys add up). Noise is clamped to +-bias, which adds delta <= 2**-40 per field.
"""

import math
import secrets
from dataclasses import dataclass
from fractions import Fraction

from ..common.errors import BadParameter

TAIL_FACTOR = 28            # bias = ceil(28 * scale): P[|Y| > bias] ~ exp(-28) < 2**-40


def _bernoulli(p: Fraction) -> bool:
    return secrets.randbelow(p.denominator) < p.numerator


def _bernoulli_exp(gamma: Fraction) -> bool:
    """True with probability exp(-gamma), gamma a non-negative Fraction (CKS Algorithm 1)."""
    while gamma > 1:
        if not _bernoulli_exp(Fraction(1)):
            return False
        gamma -= 1
    k = 1
    while _bernoulli(gamma / k):
        k += 1
    return k % 2 == 1


def discrete_laplace(scale: Fraction) -> int:
    """An integer with P[y] ~ exp(-|y| / scale) (CKS Algorithm 2).

    Args:
        scale: a positive Fraction.

    Returns:
        One sample, drawn with ``secrets`` randomness.
    """
    t, s = scale.numerator, scale.denominator
    while True:
        u = secrets.randbelow(t)
        if not _bernoulli_exp(Fraction(u, t)):
            continue
        v = 0
        while _bernoulli_exp(Fraction(1)):
            v += 1
        y = (u + t * v) // s
        negative = secrets.randbelow(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


@dataclass(frozen=True)
class Noise:
    epsilon: Fraction        # per released field
    sensitivity: int         # max_reading_wh

    @property
    def scale(self) -> Fraction:
        return Fraction(self.sensitivity) / self.epsilon

    @property
    def bias(self) -> int:
        """The public offset added to every noisy field, so it stays non-negative."""
        return math.ceil(TAIL_FACTOR * self.scale)

    def sample(self, count: int) -> list[int]:
        """count offset noise values in [0, 2*bias]."""
        bias = self.bias
        return [bias + max(-bias, min(bias, discrete_laplace(self.scale))) for _ in range(count)]

    def describe(self, slots: int) -> dict[str, str | int]:
        return {'mechanism': 'discrete Laplace (Canonne-Kamath-Steinke 2020), clamped',
                'epsilon_per_field': str(self.epsilon), 'scale_wh': str(self.scale), 'bias_wh': self.bias,
                'delta_per_field': '2**-40',
                'epsilon_per_meter_slot': str(2 * self.epsilon),
                'epsilon_per_meter_day': str(2 * slots * self.epsilon)}


def parse_epsilon(text: str) -> Fraction:
    """The privacy parameter epsilon of a configuration.

    Args:
        text: a decimal (or fraction) string such as "0.5".

    Returns:
        epsilon as an exact positive Fraction.

    Raises:
        ValueError: text is no number.
        BadParameter: epsilon <= 0 (a ValueError too).
        ZeroDivisionError: a fraction with denominator 0.
    """
    epsilon = Fraction(text)
    if epsilon <= 0:
        raise BadParameter('epsilon', 'epsilon must be > 0')
    return epsilon
