"""Secure primitives over the 127-bit prime field: vectorised comparisons, exact division, bit lengths.

Import only inside a node process: importing mpyc.runtime sets up the MPyC runtime from
sys.argv (see mpc_market.mpc.node).

Every function takes secure arrays (or lists) and awaits once per batch; bit lengths are passed
explicitly and kept tight by the callers.
"""

import hashlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from mpyc.runtime import mpc
from numpy.typing import ArrayLike

from ..common.errors import BadParameter
from . import field as ff
from . import mpyc_internals as internals
from .randbits import random_bits as fast_random_bits

internals.install()  # authenticated links and the closed wire codec before any transfer


P = ff.MODULUS



SECINT = mpc.SecInt(64, p=P)  # bit length unused: every comparison passes its own l



FIELD = SECINT.field



SEC_PARAM = mpc.options.sec_param



def commitment(pid: int, contribution: bytes) -> bytes:
    """A node's commitment to its seed contribution.

    Args:
        pid: the node's party id (0..255).
        contribution: its 32 random bytes.

    Returns:
        SHA-256 of a domain tag, pid and contribution.
    """
    return hashlib.sha256(b'mpc-market/seed-commitment/v1\n' + bytes([pid]) + contribution).digest()



def peak_rss_mb() -> float:
    """High-water mark of this process's memory (VmHWM; ru_maxrss would include the parent's).

    Returns:
        MB, or 0.0 where /proc/self/status has no VmHWM.
    """
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return 0.0



def to_secure(values: ArrayLike) -> Any:
    """A secure array of shares (MPyC secure objects have no static type: Any).

    Args:
        values: shares as ints (reduced mod p here).

    Returns:
        An MPyC SECINT array holding them.
    """
    return SECINT.array(FIELD.array(np.asarray(values, dtype=object) % P))



async def shares_of(secure_or_future: Any) -> np.ndarray:
    """This node's shares of an MPyC secure array (or a future of one).

    Args:
        secure_or_future: an MPyC secure array, or what mpc.gather awaits to one.

    Returns:
        Its shares as an object array of ints.
    """
    return (await mpc.gather(secure_or_future)).value



async def flat_apply(values: ArrayLike, op: Callable[[np.ndarray], Awaitable[Any]]) -> np.ndarray:
    """Apply async op to the flattened shares, keeping the shape (an empty array stays empty).

    Args:
        values: shares, any shape.
        op: from a flat object array (reduced mod p) to a sequence of as many shares.

    Returns:
        op's result as an object array of values' shape.
    """
    values = np.asarray(values, dtype=object)
    if values.size == 0:
        return values
    return np.asarray(await op(values.reshape(-1) % P), dtype=object).reshape(values.shape)



async def reshare_values(values: ArrayLike) -> np.ndarray:
    """Fresh degree-t shares of the same secrets (one round with all nodes).

    Args:
        values: shares of degree 2t (or any), any shape.

    Returns:
        Degree-t shares, same shape.
    """
    return await flat_apply(values, lambda v: shares_of(internals.reshare(mpc, FIELD.array(v))))



async def open_values(values: ArrayLike) -> np.ndarray:
    """Open shares to every node.

    Args:
        values: shares, any shape.

    Returns:
        The secrets (field elements), same shape.
    """
    return await flat_apply(values, lambda v: shares_of(mpc.output(FIELD.array(v))))



async def less_than_zero(values: ArrayLike, bits: int) -> np.ndarray:
    """Shares of [v < 0].

    Args:
        values: shares of v with -2**(bits-1) <= v < 2**(bits-1).
        bits: that signed bit length.

    Returns:
        Shares of the bits, same shape.

    Raises:
        BadParameter: bits too large to mask in the field (the opening would wrap and leak).
    """
    _check_opening(bits)   # v + 2**bits + r_low + r_high * 2**bits < 2**(bits + SEC_PARAM + 1)
    return await flat_apply(values, lambda v: _less_than_zero_flat(v, bits))


async def _less_than_zero_flat(values: np.ndarray, bits: int) -> np.ndarray:
    """MPyC's np_sgn(LT=True) (Toft's comparison), its random bits from fast_random_bits: MPyC's
    cost a modular square root each, and a comparison takes bits + 1 of them per value."""
    n, top = len(values), 1 << bits
    random = await fast_random_bits(FIELD, (bits + 1) * n)
    sign = (2 * random[bits * n:] - 1) % P                      # shares of s in {-1, +1}
    r_bits = random[:bits * n].reshape(n, bits)                 # most significant first
    shifts = np.arange(bits - 1, -1, -1)
    r_low = (r_bits << shifts).sum(axis=1)
    r_high = await _randoms(n, 1 << SEC_PARAM)
    masked = values + top + r_low
    opened = np.array([int(c) & (top - 1) for c in await open_values((masked + (r_high << bits)) % P)], dtype=object)
    c_bits = np.right_shift.outer(opened, shifts).T & 1         # (bits, n)
    r_cols = r_bits.T
    xors = np.cumsum(np.vstack((np.zeros((1, n), dtype=object), c_bits + r_cols - 2 * c_bits * r_cols)), axis=0)
    e = (sign - np.vstack((c_bits - r_cols, np.ones((1, n), dtype=object))) + 3 * xors) % P
    zero = np.asarray(await mpc.np_is_zero_public(mpc.np_prod(to_secure(e), axis=0)), dtype=bool)
    h = (1 - 2 * zero.astype(object)) * sign + 3
    return (opened - masked + h * (1 << (bits - 1))) * pow(top, -1, P) % P



async def is_zero(values: ArrayLike, bits: int) -> np.ndarray:
    """Shares of [v == 0] for values and bits as in less_than_zero (same shape)."""
    return await flat_apply(values, lambda v: shares_of(mpc.np_sgn(to_secure(v), l=bits, EQ=True)))



async def sign_of(values: ArrayLike, bits: int) -> np.ndarray:
    """Shares of sign(v) in {-1, 0, 1} for values and bits as in less_than_zero (same shape)."""
    return await shares_of(mpc.np_sgn(to_secure(np.asarray(values, dtype=object)), l=bits))



def supply_demand(sell: np.ndarray, buy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The supply and demand curves of per-level energies (linear: no communication).

    Args:
        sell, buy: shares of the sell and buy energy per level, levels on the last axis.

    Returns:
        Shares of S(k) (sell energy at levels <= k) and D(k) (buy energy at levels >= k).
    """
    return np.cumsum(sell, axis=-1) % P, np.cumsum(buy[..., ::-1], axis=-1)[..., ::-1] % P



def bits_needed(bound: int) -> int:
    """The signed bit length comparisons of values up to bound need.

    Args:
        bound: the largest |v|.

    Returns:
        l with -2**(l-1) <= v < 2**(l-1) for |v| <= bound.
    """
    return int(bound).bit_length() + 1



async def exact_floor_pow2(y: ArrayLike, f: int, y_bits: int) -> np.ndarray:
    """Shares of floor(y / 2**f), exactly.

    Mask y with r = r_hi*2**f + r_lo (r_lo from f random bits), open c = y + r, and correct
    floor(c/2**f) - r_hi by the borrow [c mod 2**f < r_lo], found with a bitwise comparison of
    public bits against secret bits (a la Toft; one product over f+1 rows, one zero test).

    Args:
        y: shares of 0 <= y < 2**y_bits (a flat array).
        f: the bits to drop.
        y_bits: y's bit length.

    Returns:
        The quotients' shares.
    """
    y = np.asarray(y, dtype=object)
    n = y.size
    if n == 0:
        return y
    random_bits = await fast_random_bits(FIELD, (f + 1) * n)
    r_bits = random_bits[:f * n].reshape(f, n)
    sign = (2 * random_bits[f * n:] - 1) % P  # shares of s in {-1, +1}
    r_lo = np.zeros(n, dtype=object)
    for j in range(f - 1, -1, -1):
        r_lo = (r_lo << 1) + r_bits[j]
    r_hi = await _randoms(n, 1 << (SEC_PARAM + y_bits - f))
    c = await open_values(y + r_lo + (r_hi << f))
    c_lo = np.array([int(v) for v in c], dtype=object) & ((1 << f) - 1)
    c_hi = np.array([int(v) for v in c], dtype=object) >> f
    # Row j (bits from the top): s + r_j - c_j + 3 * (number of differing bits above j).
    c_bits = (c_lo[None, :] >> np.arange(f - 1, -1, -1)[:, None].astype(object)) & 1   # (f, n) public
    r_top = r_bits[::-1]
    xor = np.where(c_bits == 1, 1 - r_top, r_top)         # c_j XOR r_j, linear as c_j is public
    above = np.cumsum(xor, axis=0)
    rows = np.empty((f + 1, n), dtype=object)
    rows[0] = sign + r_top[0] - c_bits[0]
    rows[1:f] = sign + r_top[1:] - c_bits[1:] + 3 * above[:-1]
    rows[f] = sign - 1 + 3 * above[-1]
    product = mpc.np_prod(to_secure(rows), axis=0)
    g = await mpc.np_is_zero_public(product)
    g = np.asarray(g, dtype=object).astype(int).astype(object)
    # g = [c_lo < r_lo] if s = -1, else [c_lo >= r_lo]; so borrow = (1+s)/2 - s*g.
    half = (P + 1) // 2
    borrow = ((1 + sign) * half - sign * g) % P
    return (c_hi - r_hi - borrow) % P



def radix_bits(elements: int, budget: int = 32) -> int:
    """Bits per long-division round: 2**k - 1 comparisons per element, about budget in all
    (measured: radix 16 for one slot beats radix 2 and radix 128).

    Args:
        elements: how many divisions run side by side.
        budget: comparisons per round in all.

    Returns:
        k in 1..7.
    """
    return max(1, min(7, ((budget // max(1, elements)) + 1).bit_length() - 1))



async def _next_digit(remainder: np.ndarray, step: np.ndarray, k: int, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest digit q < 2**k with remainder - q*step >= 0 (one batched comparison call),
    and the new remainder; remainder < 2**k * step."""
    multiples = np.arange(1, 1 << k, dtype=object)
    candidates = remainder[..., None] - multiples * step[..., None]
    below = await less_than_zero(candidates, bits)
    digit = ((1 << k) - 1 - below.sum(axis=-1)) % P  # candidates are decreasing in q
    return digit, (remainder - await reshare_values(digit * step)) % P



async def ceil_fraction(numerator: ArrayLike, denominator: ArrayLike, f: int, bits: int) -> np.ndarray:
    """Shares of ceil(num * 2**f / den): long division in radix 2**k (k chosen from the number of
    elements), f/k rounds, vectorized over all elements.

    Args:
        numerator, denominator: shares of 0 <= num < den, same shape.
        f: the fraction's bits.
        bits: a signed bit length bounding 2*den.

    Returns:
        The shares, numerator's shape.
    """
    remainder = np.asarray(numerator, dtype=object) % P
    denominator = np.asarray(denominator, dtype=object)
    quotient = np.zeros(remainder.shape, dtype=object)
    k_max, done = radix_bits(remainder.size), 0
    while done < f:
        k = min(k_max, f - done)
        digit, remainder = await _next_digit(remainder << k, denominator, k, bits + k)
        quotient = (quotient << k) + digit
        done += k
    exact = await is_zero(remainder, bits)
    return (quotient + 1 - exact) % P



async def integer_divide(numerator: ArrayLike, denominator: ArrayLike, quotient_bits: int,
                         bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Restoring division in radix 2**k from the top digit down.

    Args:
        numerator, denominator: shares of 0 <= num < den * 2**quotient_bits, den >= 1.
        quotient_bits: the quotient's bit length.
        bits: a signed bit length bounding the comparisons (about 2 * num).

    Returns:
        Shares of (floor(num/den), num mod den).
    """
    remainder = np.asarray(numerator, dtype=object) % P
    denominator = np.asarray(denominator, dtype=object)
    quotient = np.zeros(remainder.shape, dtype=object)
    k_max, left = radix_bits(remainder.size), quotient_bits
    while left > 0:
        k = min(k_max, left)
        left -= k
        digit, remainder = await _next_digit(remainder, denominator << left, k, bits)
        quotient = quotient + (digit << left)
    return quotient % P, remainder



async def floor_of_ratio_product(y: ArrayLike, f: int, y_bits: int, denominator_bound: int) -> np.ndarray:
    """Shares of floor(y / 2**f) when y = x * rho for an integer ratio x*N/T with T <=
    denominator_bound and rho / 2**f at least N/T but less than N/T + 1/(2 * max(x) * T): rho =
    ceil(N * 2**f / T) with 2**f >= 2 * max(x) * T, or approx_ratio's with 2**f >= 2 * RATIO_SLACK
    * max(x) * T (as chosen by the callers).

    Such a ratio's fractional part is 0 or in [1/T, 1 - 1/T], and y / 2**f overshoots it by
    less than 1/(2T); so the low f - g bits can go by a cheap probabilistic truncation (PRSS
    mask, one opening, no comparison), rounded up by a bias of one unit, as long as its error,
    below (1 + subsets) / 2**g, stays under 1/(2T). Only g = bitlen(T) + 1 + bitlen(1 + subsets)
    bits then need the exact truncation with its bitwise comparison.

    Args:
        y: shares of 0 <= y < 2**y_bits.
        f: the bits to drop.
        y_bits: y's bit length.
        denominator_bound: the largest T.

    Returns:
        The shares of floor(y / 2**f), y's shape.
    """
    y = np.asarray(y, dtype=object)
    subsets = math.comb(len(mpc.parties), mpc.threshold)  # PRSS sums this many bounded terms
    g = int(denominator_bound).bit_length() + 1 + (1 + subsets).bit_length()
    s = f - g
    if s <= 0 or y.size == 0 or mpc.options.no_prss:
        return await exact_floor_pow2(y, f, y_bits)
    coarse = await truncate((y.reshape(-1) + (1 << s)) % P, s, y_bits)   # floor(y/2**s) + 1 + e
    coarse_bits = y_bits - s + 2
    return (await exact_floor_pow2(coarse, g, coarse_bits)).reshape(y.shape)


async def _randoms(n: int, bound: int) -> np.ndarray:
    """Shares of n random values whose sum over the PRSS subsets stays below bound (MPyC halves
    each term's range by the subsets' number), without communication unless PRSS is off."""
    randoms = internals.np_randoms(mpc, FIELD, n, bound)
    if mpc.options.no_prss:
        randoms = await randoms
    return np.asarray(randoms.value, dtype=object)


def _check_opening(y_bits: int) -> None:
    """Raise BadParameter where a masked opening of y_bits-bit values would wrap the field."""
    if y_bits + SEC_PARAM + 2 > ff.MODULUS_BITS:
        raise BadParameter('bound', f'values of {y_bits} bits cannot be masked in GF(2^127-1) '
                           f'with {SEC_PARAM} bits of statistical security')


async def truncate(y: ArrayLike, s: int, y_bits: int) -> np.ndarray:
    """Shares of floor(y / 2**s) or of one more: a PRSS mask below 2**s carries at most once into
    the bits kept (one opening, no comparison; the error t - y / 2**s lies in (-1, 1)).

    Args:
        y: shares of 0 <= y < 2**y_bits (a flat array).
        s: the bits to drop (>= 0).
        y_bits: y's bit length.

    Returns:
        The truncations' shares.

    Raises:
        BadParameter: y_bits too large to mask in the field.
    """
    y = np.asarray(y, dtype=object)
    if y.size == 0 or s == 0:
        return y % P
    _check_opening(y_bits)
    r_lo = await _randoms(y.size, 1 << s)
    r_hi = await _randoms(y.size, 1 << (SEC_PARAM + y_bits - s))
    c = await open_values((y + r_lo + (r_hi << s)) % P)
    return (np.array([int(v) >> s for v in c], dtype=object) - r_hi) % P


async def secret_bits(values: ArrayLike, bits: int) -> np.ndarray:
    """Shares of the bits of 0 <= v < 2**bits, least significant first (as MPyC's np_to_bits,
    a la [ST06], but with the 3-party fast random bits: mask, open, add the mask's bits back).

    Args:
        values: shares (a flat array).
        bits: the bit length.

    Returns:
        Shares (n, bits).

    Raises:
        BadParameter: bits too large to mask in the field.
    """
    values = np.asarray(values, dtype=object)
    n = values.size
    _check_opening(bits + 1)
    r_bits = (await fast_random_bits(FIELD, n * bits)).reshape(n, bits)
    r_mod = (r_bits * (1 << np.arange(bits, dtype=object))).sum(axis=1)
    r_div = await _randoms(n, 1 << SEC_PARAM)
    c = await open_values((values + ((r_div + 1) << bits) - r_mod) % P)   # (v - r_mod) mod 2**bits, masked
    low = np.array([int(v) % (1 << bits) for v in c], dtype=object)
    c_bits = np.int8((low[:, None] >> np.arange(bits)[None, :].astype(object)) & 1)
    return await shares_of(mpc.np_add_bits(SECINT.array(FIELD.array(r_bits)), c_bits))


@dataclass(frozen=True)
class RatioPrecision:
    """approx_ratio's public parameters for f fraction bits and denominators below 2**bound_bits:
    the reciprocal's fraction bits, the Newton iterations, the first quotient digit's bits."""

    reciprocal_bits: int
    iterations: int
    first_bits: int


RATIO_SLACK = 4   # approx_ratio's overshoot: num * 2**f / den < rho < num * 2**f / den + RATIO_SLACK


def ratio_precision(f: int, bound_bits: int) -> RatioPrecision:
    """The smallest reciprocal precision G for which approx_ratio's error bound holds (its
    docstring's analysis, evaluated exactly).

    Args:
        f: the ratio's fraction bits.
        bound_bits: the denominators' bit length.

    Returns:
        The RatioPrecision.

    Raises:
        BadParameter: the values involved would not fit the field.
    """
    g = max(8, -(-(f + 7) // 2))
    eps, iterations = Fraction(1, 17) + Fraction(2, 1 << g), 0
    while eps > Fraction(3, 1 << g):
        eps, iterations = eps * eps + (2 + eps) / (1 << g), iterations + 1
    delta = 2 * (1 << g) * eps                          # |z - 2**G / u| <= delta (u >= 1/2)
    first = g - math.ceil(math.log2(delta))             # delta * 2**(h - G) <= 1
    if not (delta * Fraction(1 << first, 1 << g) <= 1 and 2 * delta * Fraction(1 << max(0, f - first), 1 << g) <= 1):
        raise BadParameter('bound', f'no reciprocal precision for {f} fraction bits')
    _check_opening(bound_bits + g + 4)
    return RatioPrecision(g, iterations, first)


async def approx_ratio(numerator: ArrayLike, denominator: ArrayLike, f: int, bound: int) -> np.ndarray:
    """Shares of rho with num * 2**f / den < rho < num * 2**f / den + RATIO_SLACK, for
    0 <= num <= den and 1 <= den <= bound: a Newton reciprocal and two quotient digits with
    cheap truncations instead of f rounds of long division (one bit decomposition in all).

    The denominator is normalised to q = den * 2**(L-1-lead) in [2**(L-1), 2**L) (L = bound's
    bit length; the leading bit from the bits' suffix products), r = num * 2**(L-1-lead); with
    u = q / 2**L in [1/2, 1), z approximates 2**G / u from z0 = 2**G (48 - 32 u) / 17 (relative
    error 1/17) by z <- z (2 - u z / 2**G), whose relative error e becomes e**2 plus under
    (2 + e) / 2**G for the two truncations; ratio_precision iterates that bound until it is
    under 3 / 2**G, so |z - 2**G / u| <= delta <= 6. Then q1 = r z / 2**(L+G-h) (truncated) is
    within 2 of r 2**h / q, the remainder r1 = r 2**h - q1 q is exact and |r1| < 2q, and
    q2 = r1 z / 2**(L+G-f+h) is within 2 of r1 2**(f-h) / q; so q1 2**(f-h) + q2 is within 2
    of num 2**f / den and rho adds 2.

    Args:
        numerator, denominator: shares, same shape.
        f: the ratio's fraction bits.
        bound: the largest denominator.

    Returns:
        The shares of rho, numerator's shape.

    Raises:
        BadParameter: the values involved would not fit the field.
    """
    shape = np.shape(numerator)
    num = np.asarray(numerator, dtype=object).reshape(-1) % P
    den = np.asarray(denominator, dtype=object).reshape(-1) % P
    if num.size == 0:
        return num.reshape(shape)
    n, length = num.size, int(bound).bit_length()
    precision = ratio_precision(f, length)
    g, h = precision.reciprocal_bits, precision.first_bits
    # suffix products of [bit j is 0]: zero_from[:, j] = [den < 2**j]; the leading bit's one-hot
    zero_from = (1 - await secret_bits(den, length)) % P
    step = 1
    while step < length:
        shifted = np.ones_like(zero_from)
        shifted[:, :-step] = zero_from[:, step:]
        zero_from = await reshare_values(zero_from * shifted)
        step *= 2
    above = np.concatenate([zero_from[:, 1:], np.ones((n, 1), dtype=object)], axis=1)
    scale = ((above - zero_from) * (1 << np.arange(length - 1, -1, -1, dtype=object))).sum(axis=1)
    q, r = await reshare_values(np.stack([den * scale, num * scale]))
    # Newton's reciprocal z ~ 2**(G+L) / q
    start, slope = ((48 << g) + 8) // 17, ((32 << g) + 8) // 17   # 2**G * 48/17 and 2**G * 32/17, rounded
    z = start - await truncate(slope * q % P, length, g + length + 1)
    for _ in range(precision.iterations):
        w = await reshare_values(q * z)
        e = (await truncate(((1 << (length + g)) - w + (1 << (length + g + 2))) % P, length, length + g + 3)
             - (1 << (g + 2)))
        v = await reshare_values(z * e)
        z = z + await truncate((v + (1 << (2 * g - 1))) % P, g, 2 * g) - (1 << (g - 1))
    rz = await reshare_values(r * z)
    if f <= h:
        return ((await truncate(rz, length + g - f, length + g + 2)) + 2).reshape(shape) % P
    q1 = await truncate(rz, length + g - h, length + g + 2)
    r1 = ((r << h) - await reshare_values(q1 * q)) % P
    v = await reshare_values(r1 * z)
    s = length + g - (f - h)
    q2 = await truncate((v + (1 << (length + g + 3))) % P, s, length + g + 4) - (1 << (length + g + 3 - s))
    return ((q1 << (f - h)) + q2 + 2).reshape(shape) % P
