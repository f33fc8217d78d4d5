"""Secure primitives over the 127-bit prime field: vectorised comparisons, exact division, bit lengths.

Import only inside a node process: importing mpyc.runtime sets up the MPyC runtime from
sys.argv (see mpc_market.mpc.node).

Every function takes secure arrays (or lists) and awaits once per batch; bit lengths are passed
explicitly and kept tight by the callers.
"""

import hashlib
import math

import numpy as np
from mpyc.runtime import mpc

from . import field as ff
from . import mpyc_internals as internals
from .randbits import random_bits as fast_random_bits

internals.install()  # authenticated links and the closed wire codec before any transfer


P = ff.MODULUS



SECINT = mpc.SecInt(64, p=P)  # bit length unused: every comparison passes its own l



FIELD = SECINT.field



SEC_PARAM = mpc.options.sec_param



def commitment(pid, contribution):
    return hashlib.sha256(b'mpc-market/seed-commitment/v1\n' + bytes([pid]) + contribution).digest()



def peak_rss_mb():
    """High-water mark of this process's memory (VmHWM; ru_maxrss would include the parent's)."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return 0.0



def to_secure(values):
    return SECINT.array(FIELD.array(np.asarray(values, dtype=object) % P))



async def shares_of(secure_or_future):
    return (await mpc.gather(secure_or_future)).value



async def flat_apply(values, op):
    """Apply async op to the flattened shares, keeping the shape (an empty array stays empty)."""
    values = np.asarray(values, dtype=object)
    if values.size == 0:
        return values
    return np.asarray(await op(values.reshape(-1) % P), dtype=object).reshape(values.shape)



async def reshare_values(values):
    """Degree-2t (or any) shares -> fresh degree-t shares of the same secrets."""
    return await flat_apply(values, lambda v: shares_of(internals.reshare(mpc, FIELD.array(v))))



async def open_values(values):
    return await flat_apply(values, lambda v: shares_of(mpc.output(FIELD.array(v))))



async def less_than_zero(values, bits):
    """Shares of [v < 0] for shares of v with -2**(bits-1) <= v < 2**(bits-1)."""
    return await flat_apply(values, lambda v: shares_of(mpc.np_sgn(to_secure(v), l=bits, LT=True)))



async def is_zero(values, bits):
    return await flat_apply(values, lambda v: shares_of(mpc.np_sgn(to_secure(v), l=bits, EQ=True)))



async def sign_of(values, bits):
    return await shares_of(mpc.np_sgn(to_secure(np.asarray(values, dtype=object)), l=bits))



def supply_demand(sell, buy):
    """Shares of S(k) (sell energy at levels <= k) and D(k) (buy energy at levels >= k) along the
    last axis, from the per-level sell and buy energies."""
    return np.cumsum(sell, axis=-1) % P, np.cumsum(buy[..., ::-1], axis=-1)[..., ::-1] % P



def bits_needed(bound):
    """Signed bit length l with -2**(l-1) <= v < 2**(l-1) for |v| <= bound."""
    return int(bound).bit_length() + 1



async def exact_floor_pow2(y, f, y_bits):
    """Shares of floor(y / 2**f) for shares of 0 <= y < 2**y_bits, exactly.

    Mask y with r = r_hi*2**f + r_lo (r_lo from f random bits), open c = y + r, and correct
    floor(c/2**f) - r_hi by the borrow [c mod 2**f < r_lo], found with a bitwise comparison of
    public bits against secret bits (a la Toft; one product over f+1 rows, one zero test).
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
    r_hi = internals.np_randoms(mpc, FIELD, n, 1 << (SEC_PARAM + y_bits - f))
    if mpc.options.no_prss:
        r_hi = await r_hi
    r_hi = r_hi.value
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



def radix_bits(elements, budget=32):
    """Bits per long-division round: 2**k - 1 comparisons per element, about budget in all
    (measured: radix 16 for one slot beats radix 2 and radix 128)."""
    return max(1, min(7, ((budget // max(1, elements)) + 1).bit_length() - 1))



async def _next_digit(remainder, step, k, bits):
    """Largest digit q < 2**k with remainder - q*step >= 0 (one batched comparison call),
    and the new remainder; remainder < 2**k * step."""
    multiples = np.arange(1, 1 << k, dtype=object)
    candidates = remainder[..., None] - multiples * step[..., None]
    below = await less_than_zero(candidates, bits)
    digit = ((1 << k) - 1 - below.sum(axis=-1)) % P  # candidates are decreasing in q
    return digit, (remainder - await reshare_values(digit * step)) % P



async def ceil_fraction(numerator, denominator, f, bits):
    """Shares of ceil(num * 2**f / den) for shares of 0 <= num < den: long division in radix
    2**k (k chosen from the number of elements), f/k rounds, vectorized over all elements.
    bits must bound 2*den as a signed bit length."""
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



async def integer_divide(numerator, denominator, quotient_bits, bits):
    """Shares of (floor(num/den), num mod den) for 0 <= num < den * 2**quotient_bits, den >= 1:
    restoring division in radix 2**k from the top digit down."""
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



async def floor_of_ratio_product(y, f, y_bits, denominator_bound):
    """Shares of floor(y / 2**f) when y = x * ceil(N * 2**f / T) for an integer ratio x*N/T with
    T <= denominator_bound and 2**f >= 2 * max(x) * T (as chosen by the callers).

    Such a ratio's fractional part is 0 or in [1/T, 1 - 1/T], and y / 2**f overshoots it by
    less than 1/(2T); so the low f - g bits can go by a cheap probabilistic truncation (PRSS
    mask, one opening, no comparison), rounded up by a bias of one unit, as long as its error,
    below (1 + subsets) / 2**g, stays under 1/(2T). Only g = bitlen(T) + 1 + bitlen(1 + subsets)
    bits then need the exact truncation with its bitwise comparison.
    """
    y = np.asarray(y, dtype=object)
    subsets = math.comb(len(mpc.parties), mpc.threshold)  # PRSS sums this many bounded terms
    g = int(denominator_bound).bit_length() + 1 + (1 + subsets).bit_length()
    s = f - g
    if s <= 0 or y.size == 0 or mpc.options.no_prss:
        return await exact_floor_pow2(y, f, y_bits)
    r_lo = internals.np_randoms(mpc, FIELD, y.size, 1 << s).value          # < subsets * 2**s, unknown to any t
    r_hi = internals.np_randoms(mpc, FIELD, y.size, 1 << (SEC_PARAM + y_bits - s)).value
    c = await open_values(y.reshape(-1) + (1 << s) + r_lo + (r_hi << s))
    coarse = (np.array([int(v) >> s for v in c], dtype=object) - r_hi) % P  # floor(y/2**s) + 1 + e
    coarse_bits = y_bits - s + 2
    return (await exact_floor_pow2(coarse, g, coarse_bits)).reshape(y.shape)
