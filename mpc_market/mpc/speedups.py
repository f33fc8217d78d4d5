"""Faster drop-ins for two MPyC internals used by every resharing over GF(2^127 - 1).

mpyc.thresha.np_random_split draws every polynomial coefficient with secrets.randbelow, one
call per field element; in a node that is the largest single cost of resharing. Here the
coefficients come from one os.urandom call per batch (127 uniform bits per element, so the
bias towards 0 is 2^-127), and the evaluation at the points 1..m uses small integers.
Other moduli keep MPyC's own implementation.
"""

import functools
import os

import numpy as np
from mpyc import thresha

from .. import field as ff

_original_np_random_split = thresha.np_random_split


def random_field_elements(count):
    """count uniformly random elements of GF(2^127 - 1) as a Python-int object array."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint64).reshape(2, count)
    high = (raw[1] & np.uint64((1 << 63) - 1)).astype(object)
    return ((high << 64) + raw[0].astype(object)) % ff.MODULUS


def np_random_split(field, s, t, m):
    """Shamir shares (m rows) of the secrets s with degree-t polynomials, as MPyC's."""
    if field.modulus != ff.MODULUS:
        return _original_np_random_split(field, s, t, m)
    if isinstance(s, field.array):
        s = s.value
    n = len(s)
    coefficients = random_field_elements(t * n).reshape(t, n)
    rows = []
    for x in range(1, m + 1):
        acc = s.copy()
        for d in range(t):
            acc = acc + coefficients[d] * (x ** (d + 1))
        rows.append(acc % ff.MODULUS)
    return np.stack(rows)


_original_recombination_vector = thresha._recombination_vector


def _signed_recombination_vector(field, xs, x_r):
    """MPyC's Lagrange coefficients as small signed ints where possible ((3, -3, 1), not
    (3, p-3, 1)): multiplying 127-bit shares by them is cheaper; results are reduced anyway."""
    vector = _original_recombination_vector(field, xs, x_r)
    p = field.modulus
    if not isinstance(p, int):
        return vector
    return [v - p if v > p // 2 else v for v in vector]


def install():
    thresha.np_random_split = np_random_split
    if not getattr(thresha._recombination_vector, 'signed', False):
        signed = functools.cache(_signed_recombination_vector)
        signed.signed = True
        thresha._recombination_vector = signed
