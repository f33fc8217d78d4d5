"""The merit-order allocation: every order's matches, unmatched energy and amount from the public
levels and the secret rationing ratios, plus the public figures derived from them.

Import only inside a node process (see mpc_market.mpc.node). ``node`` is the MarketNode whose
order shares are allocated (mpc_market.mpc.clearing); ``spec`` its public JobSpec.
"""

import numpy as np

from ..market.settlement import largest_market_price2
from . import field as ff
from . import primitives
from .primitives import SEC_PARAM, P, open_values, reshare_values


def side_energies(weighted, levels):
    """Sell and buy energy of weighted vectors (..., 2K+2): trading levels plus 'out of band'."""
    k = levels
    return (weighted[..., :k].sum(axis=-1) + weighted[..., 2 * k],
            weighted[..., k:2 * k].sum(axis=-1) + weighted[..., 2 * k + 1])


def floor_bits(spec, bound):
    f = spec.energy_bits + bound.bit_length() + 1  # 2**f >= 2 * x * T for every x, T
    y_bits = spec.energy_bits + f + 1
    # masked openings need y + r < p with r about 2**(y_bits + SEC_PARAM + 6) (PRSS sums)
    if y_bits + SEC_PARAM + 8 > ff.MODULUS_BITS:
        raise ValueError(f'market too large for GF(2^127-1): bound {bound} Wh with max_order_wh '
                         f'{spec.max_order_wh}')
    return f, y_bits


def level_prices(spec, levels):
    return np.array([spec.floor_units + int(lv) * spec.tick_units if lv >= 0 else 0 for lv in np.ravel(levels)],
                    dtype=object).reshape(np.shape(levels))


def deviation_price2_of(spec, markets):
    """2 x the deviation price of a slot's opened markets [(volume, level)] (the reference's rule)."""
    return largest_market_price2([(int(v), int(lv)) for v, lv in markets], spec.floor_units, spec.tick_units,
                                 spec.ceiling_units)


async def open_residuals(volume, matched_sums, levels):
    """Open 2V - (all matches) per trading row: the short side sums to V, the long side to V - residual."""
    residual = np.zeros(len(volume), dtype=object)
    idx = np.flatnonzero(levels >= 0)
    if idx.size:
        residual[idx] = [int(v) for v in await open_values((2 * volume[idx] - matched_sums[idx]) % P)]
    return residual


def chunk_terms(node, start, stop):
    """Per order of a chunk: exclusive prefix sums of its sell and buy energies over the levels
    (limbs, (4, n, slots, K+1)), its sell and buy energies and its side indicator (ints)."""
    k = node.layout.levels
    block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)
    weighted = block[..., node.layout.weighted].astype(np.uint64)
    pad = np.zeros(weighted.shape[:-1] + (1,), dtype=np.uint64)
    prefix = [np.concatenate([pad, np.cumsum(weighted[..., cols], axis=-1)], axis=-1)
              for cols in (slice(0, k), slice(k, 2 * k))]
    e_sell, e_buy = (ff.to_ints(e) for e in side_energies(weighted, k))
    is_sell = ff.to_ints(block[..., :k].astype(np.uint64).sum(axis=-1) + block[..., node.layout.sell_out])
    return prefix, e_sell, e_buy, is_sell


def range_sum(prefix, lo, hi):
    """Shares of the energy at levels lo <= j < hi ((n, slots) public bounds; empty if hi <= lo)."""
    lo = np.clip(lo, 0, prefix.shape[-1] - 1)
    hi = np.clip(np.maximum(hi, lo), 0, prefix.shape[-1] - 1)

    def take(at):
        return np.take_along_axis(prefix, np.broadcast_to(at[None, ..., None], prefix.shape[:-1] + (1,)), -1)

    return ff.to_ints(take(hi)[..., 0] - take(lo)[..., 0])


async def stage_one(node, valid, group, levels, rho, f, y_bits, bound, groups, price=None):
    """Merit order in every group (the whole market, or each zone) at its public level.

    Per order: the energy strictly better than its group's level is matched in full, the energy
    at the level gets floor(x * R/Q) (one product, one floor); all linear selections of the
    order's weighted vector by the public level. Returns per-order limb shares and, per group
    and slot, the sums of f_sell, f_buy and all matches. With price (one market: the slot
    prices) the shares are the final results (matched, unmatched, amount), their side split
    riding in the final resharing; else (zones) (m_sell, m_buy, f_sell, f_buy) for stage 2."""
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


def final_results(spec, valid, e_sell, e_buy, stage1, stage2, prices):
    """(matched, unmatched, amount[, local, cross]) per order of a chunk, before resharing."""
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
