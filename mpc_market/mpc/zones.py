"""The zoned market under MPC: every zone clears on its own, then one cross-zone auction.

Import only inside a node process (see mpc_market.mpc.node). Mirrors
mpc_market.market.rule.clear_zoned_slot exactly. Zone membership, each zone's level and volume
and the cross level and volume are public; each order's matches and the zone totals B, Q, R
stay secret. Stage 2 needs no new per-order product beyond its own floor: what an order has left
is its weighted vector above (sells) or below (buys) its zone's public level, minus its stage-1
floor at that level, so every stage-2 selection is linear in shares already held. The floor (and
the side split) is only computed where an order can be at the cross level at all.
"""

import numpy as np

from . import allocation as alloc
from . import field as ff
from . import primitives
from .crossing import cross, merit_ratios
from .mechanism import Clearing, Lap, Mechanism, OrderShares, register
from .primitives import P, reshare_values, supply_demand


def leftover_bounds(levels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per zone and slot the levels whose energy can be left after stage 1: sells at or above
    `lo`, buys at or below `hi` (the zone's level; everything where the zone did not trade).

    Args:
        levels: each zone's opened level per slot (-1: no trade).
        k: the number of levels K.

    Returns:
        (lo, hi, trading), levels' shape.
    """
    trading = levels >= 0
    return np.where(trading, levels, 0), np.where(trading, levels, k - 1), trading


def leftover_curves(totals: np.ndarray, levels: np.ndarray, f_sums: np.ndarray,
                    fee: int) -> tuple[np.ndarray, np.ndarray]:
    """Shares of the cross auction's S and D per slot (slots, K), linear in the zone totals.

    totals: per zone the weighted sums (zones, slots, 2K+2); levels: each zone's public level
    (-1: no trade); f_sums: per zone the sums of the stage-1 floors of its sells and buys at its
    level. A buy at level j enters at j - fee.

    Args:
        totals, levels, f_sums: as above.
        fee: the cross-zone fee in levels.

    Returns:
        Shares of (S, D), (slots, K) each.
    """
    k = totals.shape[-1] // 2 - 1
    lo, hi, _ = leftover_bounds(levels, k)
    j = np.arange(k)
    at_level = (j == levels[..., None])
    sell_left = (totals[..., :k] * (j >= lo[..., None]) - at_level * f_sums[0][..., None]).sum(axis=0) % P
    buy_left = (totals[..., k:2 * k] * (j <= hi[..., None]) - at_level * f_sums[1][..., None]).sum(axis=0) % P
    shifted = np.zeros_like(buy_left)
    shifted[:, :k - fee] = buy_left[:, fee:]
    return supply_demand(sell_left, shifted)


# ((better, at, can be at) per side, stage-1 matches per side, (e_sell, e_buy, is_sell)) of a chunk
CrossTerms = tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray],
                   tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def cross_terms(node: OrderShares, start: int, stop: int, valid: np.ndarray, zone: np.ndarray, levels: np.ndarray,
                stage: np.ndarray, k2: np.ndarray, fee: int) -> CrossTerms:
    """Per order of a chunk what it has left, selected at the cross level k2 (public): its energy
    strictly better than k2 and at k2, per side, as shares; where it can be at k2 at all; and the
    chunk's energies and side indicator. Linear: the leftover is the weighted vector above (sells)
    or below (buys) the zone's level, minus the order's stage-1 floor at that level.

    Args:
        node: the order shares.
        start, stop: the chunk's participants.
        valid: per participant whether it trades (valid and in a zone).
        zone: each participant's zone index.
        levels: each zone's opened level per slot.
        stage: stage 1's limb shares (4, participants, slots, 4).
        k2: the cross level per slot (1, slots).
        fee: the cross-zone fee in levels.

    Returns:
        ((better_sell, at_sell, sell_at), (better_buy, at_buy, buy_at), (m1_sell, m1_buy),
        (e_sell, e_buy, is_sell)), each (n, slots).
    """
    lo, hi, trading = leftover_bounds(levels, node.layout.levels)
    z = np.maximum(zone[start:stop], 0)
    (sell_prefix, buy_prefix), e_sell, e_buy, is_sell = alloc.chunk_terms(node, start, stop)
    m1 = ff.to_ints(stage[:, start:stop])
    f1_sell, f1_buy = m1[..., 2], m1[..., 3]
    lo_z, hi_z, trading_z, own = lo[z], hi[z], trading[z], levels[z]
    on = valid[start:stop, None] & (k2 >= 0)  # an invalid package must never reach a floor's opening
    sell_at = on & (k2 >= lo_z)
    better_sell = (alloc.range_sum(sell_prefix, lo_z, np.where(on, k2, lo_z))
                   - f1_sell * (trading_z & on & (own < k2)))
    at_sell = alloc.range_sum(sell_prefix, k2, k2 + 1) * sell_at - f1_sell * (trading_z & on & (own == k2))
    t = k2 + fee  # a buy at level t sits at k2 in the cross auction
    buy_at = on & (t <= hi_z)
    better_buy = (alloc.range_sum(buy_prefix, np.where(on, t + 1, hi_z + 1), hi_z + 1)
                  - f1_buy * (trading_z & on & (own > t)))
    at_buy = alloc.range_sum(buy_prefix, t, t + 1) * buy_at - f1_buy * (trading_z & on & (own == t))
    return (better_sell * on, at_sell, sell_at), (better_buy * on, at_buy, buy_at), (m1[..., 0], m1[..., 1]), \
        (e_sell, e_buy, is_sell)


async def stage_two(node: OrderShares, valid: np.ndarray, member: np.ndarray, zone: np.ndarray, levels: np.ndarray,
                    stage: np.ndarray, cross_levels: np.ndarray, cross_rho: np.ndarray, bits: tuple[int, int, int],
                    prices: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Cross-auction matches and the final results (matched, unmatched, amount, local, cross) of
    every order, and the per-slot sums of the cross matches. member: valid and in a zone (trades);
    a valid participant in no zone only settles its orders with the retailer.

    Args:
        node, valid, member, zone, levels, stage: as in cross_terms (valid: passed validation).
        cross_levels, cross_rho: the cross auction's opened levels and its ratios' shares.
        bits: (f, y_bits, bound) of the whole market.
        prices: (each zone's level prices (zones, slots), the cross prices per slot).

    Returns:
        (result limb shares (4, participants, slots, 5), cross matches per slot mod p).
    """
    f, y_bits, bound = bits
    results = np.zeros((ff.LIMBS, node.n_participants, node.n_slots, 5), dtype=np.uint32)
    cross_sums = np.zeros(node.n_slots, dtype=object)
    k2 = cross_levels[None, :]
    for start in range(0, node.n_participants, node.spec.chunk):
        stop = min(start + node.spec.chunk, node.n_participants)
        (better_sell, at_sell, sell_at), (better_buy, at_buy, buy_at), stage1, (e_sell, e_buy, is_sell) = \
            cross_terms(node, start, stop, member, zone, levels, stage, k2, node.spec.fee_levels)
        y = await reshare_values(at_sell * cross_rho[0][None, :] + at_buy * cross_rho[1][None, :])
        need = sell_at | buy_at  # only orders that can be at the cross level get a floor
        floored = np.zeros(y.shape, dtype=object)
        if need.any():
            floored[need] = await primitives.floor_of_ratio_product(y[need], f, y_bits, bound)
        # its sell part: public where only one side can be at the level, else a product of degree
        # 2t that the final resharing reduces
        f2_sell = np.where(sell_at & ~buy_at, floored, 0) + np.where(sell_at & buy_at, floored * is_sell, 0)
        keep = member[start:stop, None].astype(object)
        m2_sell = (better_sell + f2_sell) * keep % P
        m2_buy = (better_buy + floored - f2_sell) * keep % P
        cross_sums += (m2_sell + m2_buy).sum(axis=0)
        zone_price, cross_price = prices
        values = alloc.final_results(node.spec, valid[start:stop], e_sell, e_buy, stage1, (m2_sell, m2_buy),
                                     (zone_price[np.maximum(zone[start:stop], 0)], cross_price[None, :]))
        results[:, start:stop] = ff.from_ints(await reshare_values(values))
        node.progress('cross-zone', stop, node.n_participants)
    return results, cross_sums % P


async def clear_zoned(node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
    """Both stages of every slot.

    Args:
        node: the order shares (spec.zone_names and zone_of name the zones).
        valid: per participant whether it passed validation.
        lap: called at the end of 'clearing', 'allocation' and 'output'.

    Returns:
        The public outputs (per slot the cross auction and each zone) and every order's result shares.
    """
    spec, k, slots = node.spec, node.layout.levels, node.n_slots
    zone = node.zone_index()
    zones = len(spec.zone_names)
    # a participant in no zone (a deployment's: not in the round's map; locally: readings only)
    # trades nowhere: its orders settle with the retailer, its readings as everyone's
    member = valid & (zone >= 0)
    bound = max(1, int(member.sum())) * spec.max_order_wh
    f, y_bits = alloc.floor_bits(spec, bound)
    # stage 1 sums one zone at a time: its bound (and so every bit length and division) is smaller
    largest = max([int((member & (zone == z)).sum()) for z in range(zones)] + [1])
    zone_bound = largest * spec.max_order_wh
    f1, y1_bits = alloc.floor_bits(spec, zone_bound)

    # stage 1: each zone's own curves, crossing and merit order, all zones and slots in one batch
    totals = node.weighted_totals(member, zone, zones)                  # (Z, S, 2K+2)
    supply, demand = supply_demand(totals[..., :k], totals[..., k:2 * k])
    levels, volume = await cross(supply.reshape(-1, k), demand.reshape(-1, k), zone_bound)
    rho = await merit_ratios(supply.reshape(-1, k), demand.reshape(-1, k), levels, volume, zone_bound, f1)
    levels, volume = levels.astype(np.int64).reshape(zones, slots), volume.reshape(zones, slots)
    stage, sums = await alloc.stage_one(node, member, zone, levels, rho.reshape(2, zones, slots), f1, y1_bits,
                                        zone_bound, zones)
    lap('clearing')

    # stage 2: one auction over what is left, buy limits lowered by the fee
    cross_supply, cross_demand = leftover_curves(totals, levels, sums, spec.fee_levels)
    cross_levels, cross_volume = await cross(cross_supply, cross_demand, bound)
    cross_levels = cross_levels.astype(np.int64)
    cross_rho = await merit_ratios(cross_supply, cross_demand, cross_levels, cross_volume, bound, f)
    results, cross_sums = await stage_two(node, valid, member, zone, levels, stage, cross_levels, cross_rho,
                                          (f, y_bits, bound),
                                          (alloc.level_prices(spec, levels), alloc.level_prices(spec, cross_levels)))
    lap('allocation')

    residual = await alloc.open_residuals(np.concatenate([volume.reshape(-1), cross_volume]),
                                         np.concatenate([sums[2].reshape(-1), cross_sums]),
                                         np.concatenate([levels.reshape(-1), cross_levels]))
    zone_residual, cross_residual = residual[:-slots].reshape(zones, slots), residual[-slots:]
    price2 = [alloc.deviation_price2_of(spec, [(cross_volume[s], cross_levels[s])]
                                        + [(volume[c, s], levels[c, s]) for c in range(zones)])
              for s in range(slots)]
    lap('output')
    outputs = [
        {'slot': slot, 'level': int(cross_levels[s]), 'traded_wh': int(cross_volume[s]),
         'residual_wh': int(cross_residual[s]),
         'zones': [{'zone': name, 'level': int(levels[c, s]), 'traded_wh': int(volume[c, s]),
                    'residual_wh': int(zone_residual[c, s])} for c, name in enumerate(spec.zone_names)]}
        for s, slot in enumerate(spec.slots)]
    return Clearing(outputs, results, price2)


@register
class ZonedMeritOrder(Mechanism):
    """A zoned market (JobSpec.zone_names): every zone's merit order, then one cross-zone auction."""

    name = 'zoned-merit-order'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        return await clear_zoned(node, valid, lap)
