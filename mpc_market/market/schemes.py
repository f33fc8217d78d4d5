"""Community pricing schemes on a slot's total sell S and total buy D (limit prices ignored).

lambda_b = ceiling (C), lambda_s = floor (F), all in price units:

  sdr           S < D (and D > 0): sell = C F D / ((C - F) S + F D),
                                   buy = (sell S + C (D - S)) / D;  else both = F.
  mmr           Pm = (C + F)/2. S >= D: buy = Pm, sell = (D Pm + (S - D) F) / S;
                                else:   sell = Pm, buy = (S Pm + (D - S) C) / D.
  bill-sharing  buy = C max(D - S, 0) / D,  sell = F max(S - D, 0) / S  (0 on an empty side).

Published prices are on the price-unit grid: the buy price rounded down, the sell price rounded
up, so nobody pays more or receives less than the exact scheme; the grid absorbs the rounding.
Each price is written as a fraction num/den of integers so that the plaintext reference and the
MPC engine (which divides once per slot, on secrets) round identically.
"""

from __future__ import annotations

from ..common.errors import BadParameter

SCHEMES = ('sdr', 'mmr', 'bill-sharing')


def price_fractions(mechanism: str, supply: int, demand: int, floor_units: int,
                    ceiling_units: int) -> tuple[int, int, int, int]:
    """(buy_num, buy_den, sell_num, sell_den) with positive denominators."""
    s, d, f, c = supply, demand, floor_units, ceiling_units
    if mechanism == 'sdr':
        if not s < d:
            return f, 1, f, 1
        q = (c - f) * s + f * d
        if f == 0:  # a zero feed-in tariff: sellers get nothing, buyers pay C (D - S) / D
            return c * (d - s), d, 0, 1
        return c * (f * s * d + (d - s) * q), d * q, c * f * d, q
    if mechanism == 'mmr':
        if s >= d:
            if s == 0:
                return c + f, 2, c + f, 2
            return c + f, 2, d * (c + f) + 2 * (s - d) * f, 2 * s
        return s * (c + f) + 2 * (d - s) * c, 2 * d, c + f, 2
    if mechanism == 'bill-sharing':
        return c * max(d - s, 0), max(d, 1), f * max(s - d, 0), max(s, 1)
    raise BadParameter('mechanism', f'unknown mechanism {mechanism}')


def scheme_prices(mechanism: str, supply: int, demand: int, floor_units: int, ceiling_units: int) -> tuple[int, int]:
    """(buy, sell) price units: buy rounded down, sell rounded up."""
    buy_num, buy_den, sell_num, sell_den = price_fractions(mechanism, supply, demand, floor_units, ceiling_units)
    return buy_num // buy_den, -(-sell_num // sell_den)
