"""Shamir shares over GF(2^127 - 1) held as 32-bit limbs, so bulk work stays in numpy.

A node receives hundreds of shares per order. Turning each into a Python int would dominate
the run time, so shares travel and are stored as ``uint32`` arrays of shape (..., 4), little
endian limbs. Only linear maps with public coefficients are applied to them here (sums,
prefix sums, random linear combinations); their few results per order become Python ints
for MPyC. The Mersenne modulus makes reduction a shift and an add.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..common.errors import BadParameter

MODULUS_BITS = 127
MODULUS = (1 << MODULUS_BITS) - 1
LIMBS = 4
_MASK32 = np.uint64(0xFFFFFFFF)
_TOP_BITS = MODULUS_BITS - 96  # bits held by the top limb


def random_limbs(shape: tuple[int, ...]) -> np.ndarray:
    """Uniformly random field elements (bias 2**-127), from os.urandom.

    Args:
        shape: the value shape.

    Returns:
        Limb-major uint64 array (4, *shape), each limb < 2**32.
    """
    count = int(np.prod(shape, dtype=np.int64))
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint32).reshape(LIMBS, *shape).astype(np.uint64)
    raw[3] &= np.uint64((1 << _TOP_BITS) - 1)
    return raw


def _normalize(acc: np.ndarray) -> np.ndarray:
    """Reduce limb-major uint64 accumulators (4, ...), each < 2**62, to canonical limbs mod p."""
    shift32 = np.uint64(32)
    for _ in range(2):
        carry = np.zeros(acc.shape[1:], dtype=np.uint64)
        for i in range(LIMBS):
            acc[i] += carry
            np.right_shift(acc[i], shift32, out=carry)
            acc[i] &= _MASK32
        # bits >= 127 wrap around: 2^127 = 1 (mod p); carry counts units of 2^128.
        carry <<= np.uint64(32 - _TOP_BITS)
        carry += acc[3] >> np.uint64(_TOP_BITS)
        acc[3] &= np.uint64((1 << _TOP_BITS) - 1)
        acc[0] += carry
    full = ((acc[0] == _MASK32) & (acc[1] == _MASK32) & (acc[2] == _MASK32)
            & (acc[3] == np.uint64((1 << _TOP_BITS) - 1)))
    acc[:, full] = 0  # the value p itself is 0
    return acc


def share_values(values: ArrayLike, threshold: int, parties: int) -> list[np.ndarray]:
    """Shamir-share small nonnegative integers among parties 1..m (MPyC's points).

    Args:
        values: integers in [0, 2**40).
        threshold: the polynomials' degree t (0: every party holds the value itself).
        parties: m.

    Returns:
        m limb-major uint32 arrays of shape (4, *values.shape), party i+1's shares at index i.
    """
    values = np.asarray(values, dtype=np.uint64)
    flat = values.reshape(-1)
    out = [np.empty((LIMBS, flat.size), dtype=np.uint32) for _ in range(parties)]
    for start in range(0, flat.size, _BLOCK):  # cache-sized blocks: these loops are memory-bound
        block = flat[start:start + _BLOCK]
        shares = _share_block(block, threshold, parties)
        for o, share in zip(out, shares, strict=True):
            o[:, start:start + block.size] = share
    return [o.reshape(LIMBS, *values.shape) for o in out]


_BLOCK = 1 << 15


def _share_block(values: np.ndarray, threshold: int, parties: int) -> list[np.ndarray]:
    coefficients = [random_limbs(values.shape) for _ in range(threshold)]
    shares = []
    for x in range(1, parties + 1):
        # x**d <= 11**5 < 2**18: each limb term < 2**50, the sum < 2**53; t = 0 (one party): the value itself
        acc = coefficients[0] * np.uint64(x) if coefficients else np.zeros((LIMBS, *values.shape), dtype=np.uint64)
        for d, coefficient in enumerate(coefficients[1:], 2):
            acc += coefficient * np.uint64(x ** d)
        acc[0] += values
        shares.append(_normalize(acc).astype(np.uint32))
    return shares


def to_ints(limbs: np.ndarray) -> np.ndarray:
    """Python ints of limbs (not reduced mod p).

    Args:
        limbs: limb-major array (4, ...), each limb < 2**64.

    Returns:
        Object array (...) of sum_i limbs[i] << 32*i.
    """
    result = np.asarray(limbs[LIMBS - 1]).astype(object)
    for i in range(LIMBS - 2, -1, -1):
        result = (result << 32) + np.asarray(limbs[i]).astype(object)
    return result


def from_ints(values: ArrayLike) -> np.ndarray:
    """The inverse of to_ints for field elements.

    Args:
        values: Python ints in [0, p).

    Returns:
        Limb-major uint32 array (4, *shape).
    """
    values = np.asarray(values, dtype=object)
    out = np.empty((LIMBS, *values.shape), dtype=np.uint32)
    for i in range(LIMBS):
        out[i] = np.asarray((values >> (32 * i)) & 0xFFFFFFFF, dtype=object).astype(np.uint64)
    return out


def sum_rows(limbs: ArrayLike, axis: int = 0) -> np.ndarray:
    """Field sums of limb-major shares along an axis.

    Args:
        limbs: limb-major shares (4, ...), fewer than 2**32 terms along axis.
        axis: the axis of the value shape (not counting the limb axis).

    Returns:
        Object array of the sums as ints mod p.
    """
    total = np.asarray(limbs, dtype=np.uint64).sum(axis=axis + 1)  # < 2**32 * n per limb
    return to_ints(total) % MODULUS


def lincomb(limbs: np.ndarray, coefficients: Sequence[Sequence[int]]) -> np.ndarray:
    """Linear combinations sum_j share[i, j] * c[v][j] mod p of a block of shares.

    Exact float64 BLAS products on 16-bit limbs: each partial sum is < 2**32 * J < 2**53 for J < 2**21.

    Args:
        limbs: limb-major uint32 (4, n, J).
        coefficients: V sequences of J ints in [0, p).

    Returns:
        Object array (n, V) of Python ints mod p.

    Raises:
        BadParameter: J >= 2**21 (the products would no longer be exact).
    """
    n, width = limbs.shape[1], limbs.shape[2]
    if width >= 1 << 21:  # the float64 products would no longer be exact
        raise BadParameter('limbs', f'{width} limbs per vector; at most {(1 << 21) - 1}')
    coeff = from_ints(np.array(coefficients, dtype=object).T)  # (4, J, V)
    nvec = coeff.shape[2]
    coeff_halves = np.stack([h for c in coeff for h in (c & 0xFFFF, c >> 16)])  # (8, J, V)
    cmat = np.moveaxis(coeff_halves, 0, -1).reshape(width, nvec * 2 * LIMBS).astype(np.float64)
    by_offset = np.zeros((n, nvec, 4 * LIMBS - 1), dtype=np.uint64)
    for a in range(2 * LIMBS):
        plane = limbs[a // 2]
        half = (plane & 0xFFFF) if a % 2 == 0 else (plane >> 16)
        part = (half.astype(np.float64) @ cmat).astype(np.uint64).reshape(n, nvec, 2 * LIMBS)
        by_offset[:, :, a:a + 2 * LIMBS] += part  # < 8 * 2**53 fits
    result = by_offset[:, :, -1].astype(object)
    for s in range(4 * LIMBS - 3, -1, -1):
        result = (result << 16) + by_offset[:, :, s].astype(object)
    return result % MODULUS


def recombine(shares_by_party: Sequence[np.ndarray], threshold: int) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruct secrets from the shares of parties 1..m.

    Uses the first threshold+1 points and checks that all others lie on the same degree-t polynomial.

    Args:
        shares_by_party: m object arrays of ints of equal shape, party i+1's at index i.
        threshold: the degree t.

    Returns:
        (secrets as an object array of ints mod p, consistent: a boolean array of that shape).
    """
    m = len(shares_by_party)
    base = list(range(1, threshold + 2))

    def lagrange_at(x0: int) -> list[int]:
        coeffs = []
        for i in base:
            num, den = 1, 1
            for j in base:
                if j != i:
                    num = num * (x0 - j) % MODULUS
                    den = den * (i - j) % MODULUS
            coeffs.append(num * pow(den, -1, MODULUS) % MODULUS)
        return coeffs

    def evaluate(x0: int) -> np.ndarray:
        total: Any = 0  # an object array from the first term on
        for c, i in zip(lagrange_at(x0), base, strict=True):
            total = total + shares_by_party[i - 1] * c
        return total % MODULUS

    secrets = evaluate(0)
    consistent = np.ones(np.shape(secrets), dtype=bool)
    for x in range(threshold + 2, m + 1):
        consistent &= (evaluate(x) == np.asarray(shares_by_party[x - 1]) % MODULUS)
    return secrets, consistent


def signed(values: ArrayLike) -> np.ndarray:
    """Field elements as signed ints.

    Args:
        values: ints (reduced mod p here).

    Returns:
        Object array of the representatives in (-p/2, p/2).
    """
    values = np.asarray(values, dtype=object) % MODULUS
    return np.where(values > MODULUS // 2, values - MODULUS, values)
