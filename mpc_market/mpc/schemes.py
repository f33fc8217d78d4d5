"""Community pricing schemes under MPC: per slot, from secret totals S and D to public prices.

Only the rounded buy and sell price of each slot are opened. Branches (S < D, empty sides) are
secret bits applied by multiplication; every price is one batched secure division of the same
fractions as mpc_market.market.schemes (the SDR buy price as two fractions plus a carry, which keeps the
numbers below 2^80 for 100 000 participants). Every order then trades whole at its slot's public
price, so per-participant amounts are linear: no per-participant comparison at all.
"""

import numpy as np

from ..common.errors import BadParameter
from . import field as ff
from .allocation import side_energies
from .mechanism import Clearing, Lap, Mechanism, OrderShares, register
from .primitives import P, bits_needed, integer_divide, is_zero, less_than_zero, open_values, reshare_values


async def _select(bit: np.ndarray, if_one: np.ndarray, if_zero: np.ndarray) -> np.ndarray:
    return (if_zero + await reshare_values(bit * (if_one - if_zero))) % P


async def scheme_prices(mechanism: str, supply: np.ndarray, demand: np.ndarray, floor_units: int,
                        ceiling_units: int, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """A community scheme's prices from the secret totals, as mpc_market.market.schemes computes them.

    Args:
        mechanism: 'sdr', 'mmr' or 'bill-sharing'.
        supply, demand: shares of each slot's total sell and buy energy.
        floor_units, ceiling_units: the retailer's prices.
        bound: the largest total.

    Returns:
        Shares of (buy, sell) price units per slot; buy rounded down, sell rounded up.

    Raises:
        BadParameter: an unknown mechanism.
    """
    f, c = floor_units, ceiling_units
    s, d = np.asarray(supply, dtype=object), np.asarray(demand, dtype=object)
    n = s.size
    total_bits = bits_needed(2 * bound)
    less = await less_than_zero(s - d, total_bits)            # [S < D]
    more = await less_than_zero(d - s, total_bits)            # [S > D]
    zero_s, zero_d = np.split(await is_zero(np.concatenate([s, d]), total_bits), 2)
    quotient_bits = c.bit_length() + 1
    value_bits = bits_needed(4 * c * max(c, 2) * bound << 6)

    async def divide(numerators: list[np.ndarray],
                     denominators: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        q, r = await integer_divide(np.concatenate(numerators), np.concatenate(denominators), quotient_bits,
                                    value_bits)
        return np.split(q, len(numerators)), np.split(r, len(numerators))

    async def ceil_of(q: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (q + 1 - await is_zero(r, value_bits)) % P

    if mechanism == 'sdr':
        q = ((c - f) * s + f * d + (1 - less)) % P          # Q, or 1 outside the branch
        d1 = (d + (1 - less)) % P
        deficit = await reshare_values(less * (d - s))             # (D - S) in the branch, else 0
        if f == 0:
            (qb,), _ = await divide([c * deficit], [d1])
            buy_branch, sell_branch = qb, np.zeros(n, dtype=object)
        else:
            (qa, qb, qs), (ra, rb, rs) = await divide([c * f * s, c * deficit, c * f * d], [q, d1, q])
            # floor(CFS/Q + C(D-S)/D) = qa + qb + [ra/Q + rb/D >= 1]
            cross = await reshare_values(np.stack([ra * d1, rb * q, q * d1]))
            carry = (1 - await less_than_zero(cross[0] + cross[1] - cross[2],
                                               bits_needed(4 * c * c * bound * bound))) % P
            buy_branch, sell_branch = (qa + qb + carry) % P, await ceil_of(qs, rs)
        buy = await _select(less, buy_branch, np.full(n, f, dtype=object))
        sell = await _select(less, sell_branch, np.full(n, f, dtype=object))
    elif mechanism == 'mmr':
        low_mid, high_mid = (c + f) // 2, (c + f + 1) // 2
        more_or_equal = (1 - less) % P
        sell_num = await reshare_values(more_or_equal * (d * (c + f) + 2 * (s - d) * f))
        buy_num = await reshare_values(less * (s * (c + f) + 2 * (d - s) * c))
        (qs, qb), (rs, rb) = await divide([sell_num, buy_num], [2 * s + 2 * zero_s, 2 * d + more_or_equal])
        sell_branch = (await ceil_of(qs, rs) + zero_s * high_mid) % P
        sell = await _select(more_or_equal, sell_branch, np.full(n, high_mid, dtype=object))
        buy = await _select(less, qb, np.full(n, low_mid, dtype=object))
    elif mechanism == 'bill-sharing':
        buy_num = await reshare_values(less * (d - s))
        sell_num = await reshare_values(more * (s - d))
        (qb, qs), (rb, rs) = await divide([c * buy_num, f * sell_num], [d + zero_d, s + zero_s])
        buy, sell = qb, await ceil_of(qs, rs)
    else:
        raise BadParameter('mechanism', f'unknown mechanism {mechanism}')
    return buy % P, sell % P


@register
class CommunityScheme(Mechanism):
    """A community pricing scheme (JobSpec.mechanism: sdr, mmr, bill-sharing ...): public prices per
    slot from the secret totals, every order traded whole at them."""

    name = 'community-scheme'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        spec, layout, k = node.spec, node.layout, node.layout.levels
        bound = max(1, int(valid.sum())) * spec.max_order_wh
        supply, demand = node.side_totals(valid)
        buy, sell = await scheme_prices(spec.mechanism, supply, demand, spec.floor_units, spec.ceiling_units, bound)
        opened = np.split(await open_values(np.concatenate([buy, sell])), 2)
        buy, sell = (np.array([int(v) for v in x], dtype=object) for x in opened)
        price2 = [int(b + s) for b, s in zip(buy, sell, strict=True)]
        lap('clearing')
        results = np.zeros((ff.LIMBS, node.n_participants, node.n_slots, 3), dtype=np.uint32)
        for start in range(0, node.n_participants, spec.chunk):
            stop = min(start + spec.chunk, node.n_participants)
            weighted = np.asarray(node.shares[:, start:stop], dtype=np.uint32)[..., layout.weighted].astype(np.uint64)
            keep = valid[start:stop, None].astype(object)
            e_sell, e_buy = (ff.to_ints(e) * keep for e in side_energies(weighted, k))
            amount = buy[None, :] * e_buy - sell[None, :] * e_sell
            fresh = await reshare_values(np.stack([e_sell + e_buy, np.zeros_like(amount), amount], axis=-1))
            results[:, start:stop] = ff.from_ints(fresh)
            node.progress('allocation', stop, node.n_participants)
        lap('allocation')
        slots = [{'slot': s, 'buy_price_units': int(b), 'sell_price_units': int(v)}
                 for s, b, v in zip(spec.slots, buy, sell, strict=True)]
        return Clearing(slots, results, price2)
