"""Plaintext reference of the clearing rule; the MPC engine must agree with it exactly.

The rule (per slot, levels k = 0..K-1):
  S(k) = sell energy with level <= k, D(k) = buy energy with level >= k;
  k* = lowest k with S(k) >= D(k) (K if none); candidates k*-1 (volume S(k*-1)) and k*
  (volume D(k*)); the larger volume wins, then the smaller |S-D|, then the lower level.
  The short side is matched in full, each long-side order gets floor(E*V/L).
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
    matched = []
    for side, order_level, energy in entries:
        if side == 'sell':
            eligible = energy if order_level <= level else 0
            matched.append(eligible * volume // sell_total)
        else:
            eligible = energy if order_level >= level else 0
            matched.append(eligible * volume // buy_total)
    # The short side has total == volume, so floor(E*V/V) = E: matched in full.
    long_side = 'sell' if sell_total > buy_total else 'buy'
    allocated = sum(m for m, (side, _, _) in zip(matched, entries) if side == long_side)
    residual = volume - allocated if sell_total != buy_total else 0
    return SlotOutcome(level, volume, residual, sell_total, buy_total), matched


def order_amount(config: MarketConfig, side: str, energy: int, matched: int, price_units: int | None) -> int:
    """Amount in 10**-(decimals+3) currency: positive the participant pays, negative it is paid."""
    unmatched = energy - matched
    traded = matched * (price_units or 0)
    if side == 'buy':
        return traded + unmatched * config.ceiling_units
    return -(traded + unmatched * config.floor_units)
