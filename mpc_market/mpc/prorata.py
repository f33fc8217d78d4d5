"""The pro-rata rule the merit order replaced, kept as a registered mechanism for the benchmarks'
same-run ratio (JobSpec.allocation 'pro-rata'; a market file cannot select it).

Import only inside a node process (see mpc_market.mpc.node). The crossing is the product's; only
the allocation differs: every eligible order of a side (sells at or below the level, buys at or
above it) gets floor(E * V / T), T the side's eligible total, so the short side trades in full
and the long side leaves a residual. Its plaintext twin is
mpc_market.market.rule.prorata_clear_slot.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from . import allocation as alloc
from . import field as ff
from . import primitives
from .mechanism import Clearing, Lap, Mechanism, OrderShares, register
from .merit_order import cross_one_market, slot_outputs
from .primitives import P, bits_needed, ceil_fraction, is_zero, less_than_zero, open_values, reshare_values


async def ratio(volume: ArrayLike, totals: np.ndarray, bound: int, f: int) -> np.ndarray:
    """Shares of ceil(V * 2**f / T), by long division.

    Args:
        volume: public V, one per element.
        totals: shares of T >= V > 0.
        bound: the largest T.
        f: the fraction bits.

    Returns:
        The ratios' shares (2**f where V = T).
    """
    volume = np.asarray(volume, dtype=object)
    bits = bits_needed(2 * bound)
    equal = await is_zero(totals - volume, bits)
    fraction = await ceil_fraction(volume * (1 - equal) % P, totals, f, bits)  # V < T, or 0 if V = T
    return (fraction + (equal << f)) % P


async def allocate(node: OrderShares, valid: np.ndarray, levels: np.ndarray, rho_sell: np.ndarray,
                   rho_buy: np.ndarray, f: int, y_bits: int, prices: Sequence[int],
                   bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Every eligible order's floor(E * V / T) at the crossing, and its bill.

    Args:
        node: the order shares.
        valid: per participant whether it trades.
        levels: opened level per slot (-1: none).
        rho_sell, rho_buy: shares of each side's ratio per slot.
        f, y_bits, bound: from allocation.floor_bits.
        prices: the price of every level.

    Returns:
        (result shares (4, participants, slots, 3), per-slot sums (2, slots) of sell/buy allocations).
    """
    layout, k = node.layout, node.layout.levels
    results = np.zeros((ff.LIMBS, node.n_participants, node.n_slots, 3), dtype=np.uint32)
    sums = np.zeros((2, node.n_slots), dtype=object)
    trading = levels >= 0
    chosen = np.where(trading, levels, 0).astype(np.int64)
    price = np.array([prices[int(lv)] if lv >= 0 else 0 for lv in levels], dtype=object)
    floor_u, ceil_u = node.spec.floor_units, node.spec.ceiling_units
    for start in range(0, node.n_participants, node.spec.chunk):
        stop = min(start + node.spec.chunk, node.n_participants)
        n = stop - start
        block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)  # (4, n, S, W)
        weighted = block[..., layout.weighted].astype(np.uint64)
        sell_prefix = np.cumsum(weighted[..., :k], axis=-1)          # level <= k
        buy_suffix = np.cumsum(weighted[..., k:2 * k][..., ::-1], axis=-1)[..., ::-1]  # level >= k
        pick = np.broadcast_to(chosen[None, None, :, None], (ff.LIMBS, n, node.n_slots, 1))
        x_sell = ff.to_ints(np.take_along_axis(sell_prefix, pick, -1)[..., 0])
        x_buy = ff.to_ints(np.take_along_axis(buy_suffix, pick, -1)[..., 0])
        e_sell, e_buy = (ff.to_ints(e) for e in alloc.side_energies(weighted, k))
        # orders outside the band: all unmatched, at the retailer's prices
        is_sell = ff.to_ints(block[..., :k].astype(np.uint64).sum(axis=-1) + block[..., layout.sell_out])
        keep = (valid[start:stop, None] & trading[None, :]).astype(object)
        keep_all = valid[start:stop, None].astype(object)
        x_sell, x_buy = x_sell * keep % P, x_buy * keep % P
        e_sell, e_buy, is_sell = e_sell * keep_all % P, e_buy * keep_all % P, is_sell * keep_all % P
        y = await reshare_values(x_sell * rho_sell[None, :] + x_buy * rho_buy[None, :])
        matched = (await primitives.floor_of_ratio_product(y.reshape(-1), f, y_bits, bound)).reshape(n, node.n_slots)
        m_sell = await reshare_values(matched * is_sell)
        m_buy = (matched - m_sell) % P
        unmatched = (e_sell + e_buy - matched) % P
        amount = (price * (m_buy - m_sell) + ceil_u * (e_buy - m_buy) - floor_u * (e_sell - m_sell)) % P
        sums[0] += m_sell.sum(axis=0)
        sums[1] += m_buy.sum(axis=0)
        fresh = await reshare_values(np.stack([matched, unmatched, amount], axis=-1))
        results[:, start:stop] = ff.from_ints(fresh)
        node.progress('allocation', stop, node.n_participants)
    return results, sums % P


async def residuals(sell_total: np.ndarray, buy_total: np.ndarray, volume: np.ndarray, sums: np.ndarray,
                    bound: int, trading: np.ndarray) -> np.ndarray:
    """Open V - (allocations of the long side) per trading slot.

    Args:
        sell_total, buy_total: shares of each side's eligible total per slot.
        volume: opened volume per slot.
        sums: shares of the sell and buy allocations per slot, from allocate.
        bound: the largest total.
        trading: per slot whether it trades.

    Returns:
        The residuals (ints), 0 where a slot does not trade.
    """
    residual = np.zeros(len(volume), dtype=object)
    if not trading.any():
        return residual
    idx = np.flatnonzero(trading)
    long_sell = await less_than_zero(buy_total[idx] - sell_total[idx], bits_needed(bound))
    long_sum = await reshare_values(sums[1, idx] + long_sell * (sums[0, idx] - sums[1, idx]))
    opened = await open_values((volume[idx] - long_sum) % P)
    residual[idx] = [int(v) for v in opened]
    return residual


@register
class ProRata(Mechanism):
    """floor(E * V / T) for every eligible order of each side at the product's crossing."""

    name = 'pro-rata'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        spec, crossed = node.spec, await cross_one_market(node, valid, lap)
        bound, f, y_bits, supply, demand = crossed.bound, crossed.f, crossed.y_bits, crossed.supply, crossed.demand
        levels, volume = crossed.levels, crossed.volume
        trading = levels >= 0
        chosen = np.where(trading, levels, 0).astype(np.int64)
        sell_total = supply[np.arange(node.n_slots), chosen]
        buy_total = demand[np.arange(node.n_slots), chosen]
        rho_sell = np.zeros(node.n_slots, dtype=object)
        rho_buy = np.zeros(node.n_slots, dtype=object)
        idx = np.flatnonzero(trading)
        if idx.size:
            both = await ratio(np.concatenate([volume[idx], volume[idx]]),
                               np.concatenate([sell_total[idx], buy_total[idx]]), bound, f)
            rho_sell[idx], rho_buy[idx] = both[:idx.size], both[idx.size:]
        prices = [spec.floor_units + j * spec.tick_units for j in range(spec.levels)]
        results, sums = await allocate(node, valid, levels, rho_sell, rho_buy, f, y_bits, prices, bound)
        lap('allocation')
        residual = await residuals(sell_total, buy_total, volume, sums, bound, trading)
        lap('output')
        return Clearing(slot_outputs(spec.slots, levels, volume, residual), results, crossed.price2)
