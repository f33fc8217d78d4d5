"""Plaintext reference of the clearing rule; the MPC engine must agree with it exactly.

The rule (per slot, levels k = 0..K-1):
  S(k) = sell energy with level <= k, D(k) = buy energy with level >= k;
  k* = lowest k with S(k) >= D(k) (K if none); candidates k*-1 (volume S(k*-1)) and k*
  (volume D(k*)); the larger volume wins, then the smaller |S-D|, then the lower level.
  Merit order at the chosen level k with volume V: the short side is matched in full; on the
  long side the orders strictly better than k (sells below k, buys above k; total B) are matched
  in full and the orders at k (total Q) share R = V - B, each floor(E*R/Q); residual_wh = R -
  the sum of those floors.

Why B <= V (so 0 <= R <= Q): the larger candidate volume wins, so the chosen V is at least the
other candidate's volume. If k = k*-1 was chosen, V = S(k*-1) < D(k*-1): the buys are long and
those strictly better than k total D(k+1) = D(k*), the other candidate's volume (or 0 when
k* = K). If k = k* was chosen, V = D(k*) <= S(k*): the sells are long (or balanced) and those
strictly better total S(k-1) = S(k*-1), the other candidate's volume (or 0 when k* = 0). On the
short side B + Q = V, so R = Q and every order gets floor(E*Q/Q) = E: one formula, both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .config import MarketConfig


@dataclass(frozen=True)
class SlotOutcome:
    level: int | None   # chosen level, None when nothing trades
    traded_wh: int      # V
    residual_wh: int    # V - sum of long-side allocations
    sell_total_wh: int  # S at the chosen level (secret in MPC)
    buy_total_wh: int   # D at the chosen level (secret in MPC)


def curves(entries: Sequence[tuple[str, int, int]], levels: int) -> tuple[list[int], list[int]]:
    """S(k) and D(k) as lists; entries are (side, level, energy) with side 'sell'/'buy'."""
    sell_at = [0] * levels
    buy_at = [0] * levels
    for side, level, energy in entries:
        (sell_at if side == 'sell' else buy_at)[level] += energy
    supply, acc = [], 0
    for k in range(levels):
        acc += sell_at[k]
        supply.append(acc)
    demand, acc = [0] * levels, 0
    for k in range(levels - 1, -1, -1):
        acc += buy_at[k]
        demand[k] = acc
    return supply, demand


def choose_level(supply: Sequence[int], demand: Sequence[int]) -> tuple[int | None, int]:
    """Chosen level and traded volume V (level None when V == 0)."""
    levels = len(supply)
    k_star = next((k for k in range(levels) if supply[k] >= demand[k]), levels)
    candidates = []  # (volume, |S-D|, level)
    if k_star >= 1:
        k = k_star - 1
        candidates.append((supply[k], demand[k] - supply[k], k))
    if k_star <= levels - 1:
        k = k_star
        candidates.append((demand[k], supply[k] - demand[k], k))
    volume, _, level = min(candidates, key=lambda c: (-c[0], c[1], c[2]))
    if volume == 0:
        return None, 0
    return level, volume


def clear_slot(entries: Sequence[tuple[str, int, int]], levels: int) -> tuple[SlotOutcome, list[int]]:
    """Clear one slot. entries: (side, level, energy) of the orders that can trade locally.

    Returns (SlotOutcome, matched) with matched[i] the matched Wh of entries[i].
    """
    supply, demand = curves(entries, levels)
    level, volume = choose_level(supply, demand)
    if level is None:
        return SlotOutcome(None, 0, 0, supply[-1] if supply else 0, demand[0] if demand else 0), [0] * len(entries)
    sell_total, buy_total = supply[level], demand[level]
    # per side: B (strictly better than the level), Q (at the level), R = V - B
    sell_better = supply[level - 1] if level > 0 else 0
    buy_better = demand[level + 1] if level + 1 < levels else 0
    share = {'sell': (volume - sell_better, sell_total - sell_better),
             'buy': (volume - buy_better, buy_total - buy_better)}
    matched = []
    for side, order_level, energy in entries:
        better = order_level < level if side == 'sell' else order_level > level
        if better:
            matched.append(energy)
        elif order_level == level:
            remaining, at_level = share[side]
            matched.append(energy * remaining // at_level if at_level else 0)  # Q = 0: only empty orders
        else:
            matched.append(0)
    residual = 2 * volume - sum(matched)  # the short side sums to V, the long side to V - residual
    return SlotOutcome(level, volume, residual, sell_total, buy_total), matched

def clear_zoned_slot(entries: Sequence[tuple[str, int, int, str]], zones: Sequence[str], levels: int,
                     fee_levels: int) -> tuple[list[SlotOutcome], SlotOutcome, list[int], list[int]]:
    """Clear one slot of a zoned market. entries: (side, level, energy, zone).

    Stage 1: every zone clears its own orders with the rule above. Stage 2: what each order has
    left (energy minus its stage-1 match) enters one cross-zone auction in which every buy limit
    drops by fee_levels (a buy that falls below the floor cannot cross).

    Why every stage-2 trade crosses zones: after stage 1 at level k (or with nothing traded), a
    zone's remaining sells all have level >= k and its remaining buys level <= k, and not both
    at k, since the short side at k is matched in full; with no trade at all every sell level
    exceeds every buy level (else S(a) > 0 and D(a) > 0 at a sell's level a, so V > 0). So a
    zone's remaining sell level exceeds its remaining buy levels, and stage 2 matching a sell at
    s <= k2 and a buy at b - fee_levels >= k2 from one zone would need s <= b. Each zone is
    therefore only on one side of stage 2.

    Returns (stage-1 outcome per zone, stage-2 outcome, stage-1 matches, stage-2 matches).
    """
    local, first = [], [0] * len(entries)
    for zone in zones:
        members = [i for i, entry in enumerate(entries) if entry[3] == zone]
        outcome, matched = clear_slot([entries[i][:3] for i in members], levels)
        local.append(outcome)
        for i, m in zip(members, matched, strict=True):
            first[i] = m
    leftovers = []
    for (side, level, energy, _), m in zip(entries, first, strict=True):
        if side == 'buy':
            level -= fee_levels
        leftovers.append((side, max(level, 0), energy - m if level >= 0 else 0))
    cross, second = clear_slot(leftovers, levels)
    return local, cross, first, second


def order_amount(config: MarketConfig, side: str, energy: int, matched: int, price_units: int | None,
                 cross_wh: int = 0, cross_price_units: int | None = None) -> int:
    """Amount in 10**-(decimals+3) currency: positive the participant pays, negative it is paid.

    matched is the whole match; in a zoned market cross_wh of it traded across zones at the cross
    price (buyers pay the network fee on top), the rest in the own zone at price_units.
    """
    unmatched = energy - matched
    cross_price = (cross_price_units or 0) + (config.fee_units if side == 'buy' else 0)
    traded = (matched - cross_wh) * (price_units or 0) + cross_wh * cross_price
    if side == 'buy':
        return traded + unmatched * config.ceiling_units
    return -(traded + unmatched * config.floor_units)


def prorata_clear_slot(entries: list[tuple[str, int, int]], levels: int) -> tuple[int | None, int, int, list[int]]:
    """The pro-rata rule the merit order replaced (the benchmarks' same-run ratio; plaintext twin of
    mpc_market.mpc.prorata): the same crossing, then every eligible order of a side gets
    floor(E * V / T), T the side's eligible total.

    Args:
        entries: (side, level, energy Wh) per order of the slot, side 'sell' or 'buy'.
        levels: the number of price levels K.

    Returns:
        (level or None, traded volume, residual of the long side, matched Wh per entry).
    """
    supply, demand = curves(entries, levels)
    level, volume = choose_level(supply, demand)
    if level is None:
        return None, 0, 0, [0] * len(entries)
    totals = {'sell': supply[level], 'buy': demand[level]}
    matched = [(energy if (lv <= level if side == 'sell' else lv >= level) else 0) * volume // totals[side]
               for side, lv, energy in entries]
    long_side = 'sell' if totals['sell'] > totals['buy'] else 'buy'
    residual = volume - sum(m for m, e in zip(matched, entries, strict=True) if e[0] == long_side) \
        if totals['sell'] != totals['buy'] else 0
    return level, volume, residual, matched
