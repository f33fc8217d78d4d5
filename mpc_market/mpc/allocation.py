"""The merit-order allocation: every order's matches, unmatched energy and amount from the public
levels and the secret rationing ratios, plus the public figures derived from them.

Import only inside a node process (see mpc_market.mpc.node). ``node`` is the MarketNode whose
order shares are allocated (mpc_market.mpc.clearing); ``spec`` its public JobSpec.
"""

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ..common.errors import BadParameter
from ..market.settlement import largest_market_price2
from . import field as ff
from . import primitives
from .jobs import JobSpec
from .mechanism import OrderShares
from .primitives import SEC_PARAM, P, open_values, reshare_values


def side_energies(weighted: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Sell and buy energy of weighted vectors: trading levels plus 'out of band'.

    Args:
        weighted: the weighted columns (..., 2K+2), limbs or ints.
        levels: K.

    Returns:
        (sell energy, buy energy), shape (...), unreduced sums.
    """
    k = levels
    return (weighted[..., :k].sum(axis=-1) + weighted[..., 2 * k],
            weighted[..., k:2 * k].sum(axis=-1) + weighted[..., 2 * k + 1])


def floor_bits(spec: JobSpec, bound: int, slack: int = 1) -> tuple[int, int]:
    """The fraction bits of the rationing ratios and the bit length of their products.

    Args:
        spec: the job (energy_bits, max_order_wh).
        bound: the largest total a side can reach.
        slack: how many units at f bits a ratio may overshoot (1: the ceiling's less than one).

    Returns:
        (f, y_bits) with 2**f >= 2 * slack * x * T for every order x and total T.

    Raises:
        BadParameter: the masked openings would not fit GF(2^127-1).
    """
    f = spec.energy_bits + bound.bit_length() + 1 + (slack - 1).bit_length()  # 2**f >= 2 * slack * x * T
    y_bits = spec.energy_bits + f + 1
    # masked openings need y + r < p with r about 2**(y_bits + SEC_PARAM + 6) (PRSS sums)
    if y_bits + SEC_PARAM + 8 > ff.MODULUS_BITS:
        raise BadParameter('max_order_wh', f'market too large for GF(2^127-1): bound {bound} Wh with '
                           f'max_order_wh {spec.max_order_wh}')
    return f, y_bits


def level_prices(spec: JobSpec, levels: ArrayLike) -> np.ndarray:
    """The price (units) of public levels.

    Args:
        spec: the job (floor_units, tick_units).
        levels: levels, -1 where nothing trades.

    Returns:
        Object array of levels' shape: floor + level * tick, 0 at level -1.
    """
    return np.array([spec.floor_units + int(lv) * spec.tick_units if lv >= 0 else 0 for lv in np.ravel(levels)],
                    dtype=object).reshape(np.shape(levels))


def deviation_price2_of(spec: JobSpec, markets: Iterable[tuple[int, int]]) -> int:
    """2 x the deviation price of a slot's opened markets (the reference's rule).

    Args:
        spec: the job's prices.
        markets: [(volume, level)] of the slot (one, or the cross auction and each zone).

    Returns:
        2 x the price settlement values a deviation at.
    """
    return largest_market_price2([(int(v), int(lv)) for v, lv in markets], spec.floor_units, spec.tick_units,
                                 spec.ceiling_units)


async def open_residuals(volume: np.ndarray, matched_sums: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Open 2V - (all matches) per trading row: the short side sums to V, the long side to V - residual.

    Args:
        volume: opened volume per row.
        matched_sums: shares of the sum of every order's matches per row.
        levels: opened level per row (-1: not trading, residual 0).

    Returns:
        The residuals (ints), one a row.
    """
    residual = np.zeros(len(volume), dtype=object)
    idx = np.flatnonzero(levels >= 0)
    if idx.size:
        residual[idx] = [int(v) for v in await open_values((2 * volume[idx] - matched_sums[idx]) % P)]
    return residual


def chunk_terms(node: OrderShares, start: int,
                stop: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per order of a chunk: exclusive prefix sums of its sell and buy energies over the levels
    (limbs, (4, n, slots, K+1)), its sell and buy energies and its side indicator (ints).

    Args:
        node: the order shares.
        start, stop: the chunk's participants.

    Returns:
        ([sell prefix, buy prefix], sell energy, buy energy, is-sell), the last three (n, slots).
    """
    k = node.layout.levels
    block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)
    weighted = block[..., node.layout.weighted].astype(np.uint64)
    pad = np.zeros(weighted.shape[:-1] + (1,), dtype=np.uint64)
    prefix = [np.concatenate([pad, np.cumsum(weighted[..., cols], axis=-1)], axis=-1)
              for cols in (slice(0, k), slice(k, 2 * k))]
    e_sell, e_buy = (ff.to_ints(e) for e in side_energies(weighted, k))
    is_sell = ff.to_ints(block[..., :k].astype(np.uint64).sum(axis=-1) + block[..., node.layout.sell_out])
    return prefix, e_sell, e_buy, is_sell


def range_sum(prefix: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Shares of the energy at levels lo <= j < hi (0 if hi <= lo).

    Args:
        prefix: exclusive prefix sums in limbs (4, n, slots, K+1), from chunk_terms.
        lo, hi: public bounds, (n, slots).

    Returns:
        Object array (n, slots) of ints.
    """
    lo = np.clip(lo, 0, prefix.shape[-1] - 1)
    hi = np.clip(np.maximum(hi, lo), 0, prefix.shape[-1] - 1)

    def take(at: np.ndarray) -> np.ndarray:
        return np.take_along_axis(prefix, np.broadcast_to(at[None, ..., None], prefix.shape[:-1] + (1,)), -1)

    return ff.to_ints(take(hi)[..., 0] - take(lo)[..., 0])


async def stage_one(node: OrderShares, valid: np.ndarray, group: np.ndarray, levels: np.ndarray, rho: np.ndarray,
                    f: int, y_bits: int, bound: int, groups: int,
                    price: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merit order in every group (the whole market, or each zone) at its public level.

    Per order: the energy strictly better than its group's level is matched in full, the energy
    at the level gets floor(x * R/Q) (one product, one floor); all linear selections of the
    order's weighted vector by the public level. Returns per-order limb shares and, per group
    and slot, the sums of f_sell, f_buy and all matches. With price (one market: the slot
    prices) the shares are the final results (matched, unmatched, amount), their side split
    riding in the final resharing; else (zones) (m_sell, m_buy, f_sell, f_buy) for stage 2.

    Args:
        node: the order shares.
        valid: per participant whether it trades.
        group: each participant's group index (-1 counts as group 0 and must be invalid).
        levels: each group's opened level per slot (groups, slots).
        rho: shares of each group's ratios (2, groups, slots).
        f, y_bits, bound: from floor_bits.
        groups: how many groups.
        price: per slot the price, with one market only.

    Returns:
        (limb shares (4, participants, slots, 3 or 4), sums (3, groups, slots) mod p).
    """
    k, slots = node.layout.levels, node.n_slots
    out = np.zeros((ff.LIMBS, node.n_participants, slots, 3 if price is not None else 4), dtype=np.uint32)
    sums = np.zeros((3, groups, slots), dtype=object)
    for start in range(0, node.n_participants, node.spec.chunk):
        stop = min(start + node.spec.chunk, node.n_participants)
        g = np.maximum(group[start:stop], 0)
        lv = np.asarray(levels, dtype=np.int64)[g]  # (n, slots): each order's group level
        keep = (valid[start:stop, None] & (lv >= 0)).astype(object)
        (sell_prefix, buy_prefix), e_sell, e_buy, is_sell = chunk_terms(node, start, stop)
        better_sell = range_sum(sell_prefix, np.zeros_like(lv), lv) * keep
        better_buy = range_sum(buy_prefix, lv + 1, np.full_like(lv, k)) * keep
        at_sell = range_sum(sell_prefix, lv, lv + 1) * keep
        at_buy = range_sum(buy_prefix, lv, lv + 1) * keep
        y = await reshare_values(at_sell * rho[0][g] + at_buy * rho[1][g])
        need = keep.astype(bool)
        floored = np.zeros(y.shape, dtype=object)
        if need.any():
            floored[need] = await primitives.floor_of_ratio_product(y[need], f, y_bits, bound)
        np.add.at(sums[2], g, (better_sell + better_buy + floored) * valid[start:stop, None])
        if price is not None:   # f_sell = floored * is_sell has degree 2t: the resharing reduces it
            f_sell = floored * is_sell
            values = final_results(node.spec, valid[start:stop], e_sell, e_buy,
                                        (better_sell + f_sell, better_buy + floored - f_sell), None, (price,))
        else:
            f_sell = await reshare_values(floored * is_sell)
            f_buy = (floored - f_sell) % P
            np.add.at(sums[0], g, f_sell * valid[start:stop, None])
            np.add.at(sums[1], g, f_buy * valid[start:stop, None])
            values = np.stack([(better_sell + f_sell) % P, (better_buy + f_buy) % P, f_sell, f_buy], axis=-1)
        out[:, start:stop] = ff.from_ints(await reshare_values(values) if price is not None else values)
        node.progress('allocation', stop, node.n_participants)
    return out, sums % P


def final_results(spec: JobSpec, valid: np.ndarray, e_sell: np.ndarray, e_buy: np.ndarray,
                  stage1: tuple[np.ndarray, np.ndarray], stage2: tuple[np.ndarray, np.ndarray] | None,
                  prices: Sequence[np.ndarray]) -> np.ndarray:
    """(matched, unmatched, amount[, local, cross]) per order of a chunk, before resharing.

    Args:
        spec: the job's prices.
        valid: per participant of the chunk whether it trades.
        e_sell, e_buy: shares of its sell and buy energy (n, slots).
        stage1: shares of its (sold, bought) matches in its market (or zone).
        stage2: shares of its cross-zone (sold, bought) matches, or None with one market.
        prices: the stage prices per order and slot, (stage 1[, stage 2]).

    Returns:
        Shares (n, slots, 3 or 5) mod p, of degree up to 2t.
    """
    keep = valid[:, None].astype(object)
    e_sell, e_buy = e_sell * keep % P, e_buy * keep % P
    floor_u, ceil_u = spec.floor_units, spec.ceiling_units
    m1_sell, m1_buy = stage1
    matched_sell, matched_buy = m1_sell, m1_buy
    amount = prices[0] * (m1_buy - m1_sell)
    fields = []
    if stage2 is not None:
        m2_sell, m2_buy = stage2
        matched_sell, matched_buy = (m1_sell + m2_sell) % P, (m1_buy + m2_buy) % P
        amount = amount + prices[1] * (m2_buy - m2_sell) + spec.fee_units * m2_buy
        fields = [m1_sell + m1_buy, m2_sell + m2_buy]
    matched = matched_sell + matched_buy
    amount = amount + ceil_u * (e_buy - matched_buy) - floor_u * (e_sell - matched_sell)
    return np.stack([matched, e_sell + e_buy - matched, amount, *fields], axis=-1) % P
