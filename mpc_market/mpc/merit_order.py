"""The merit-order double auction under MPC: one market, every slot at its crossing.

Import only inside a node process (see mpc_market.mpc.node). Mirrors
mpc_market.market.rule.clear_slot exactly: the chosen level and traded volume per slot are opened;
the orders strictly better than the level trade in full, those at the level share what is left
pro rata (one floor each), every order billed at the slot's price.
"""

from dataclasses import dataclass

import numpy as np

from . import allocation as alloc
from .crossing import cross, merit_ratios
from .mechanism import Clearing, Lap, Mechanism, OrderShares, register


def slot_outputs(slots: list[int], levels: np.ndarray, volume: np.ndarray,
                 residual: np.ndarray) -> list[dict[str, int]]:
    """The opened values of a one-market slot: level, traded and residual energy.

    Args:
        slots: the job's slots.
        levels, volume, residual: opened, one a slot.

    Returns:
        [{slot, level, traded_wh, residual_wh}] (PublicOutputs.slots).
    """
    return [{'slot': s, 'level': int(lv), 'traded_wh': int(v), 'residual_wh': int(r)}
            for s, lv, v, r in zip(slots, levels, volume, residual, strict=True)]


@dataclass(frozen=True)
class Crossed:
    """One market crossed: the bound on any total, the floors' bit lengths, the curves' shares and the
    opened level and volume per slot, with each slot's deviation price (2 x)."""

    bound: int
    f: int
    y_bits: int
    supply: np.ndarray
    demand: np.ndarray
    levels: np.ndarray
    volume: np.ndarray
    price2: list[int]


async def cross_one_market(node: OrderShares, valid: np.ndarray, lap: Lap) -> Crossed:
    """The valid orders' curves and every slot's crossing (the 'clearing' phase of one market).

    Args:
        node: the order shares.
        valid: per participant whether it trades.
        lap: called with 'clearing' when done.

    Returns:
        The Crossed market.
    """
    spec = node.spec
    bound = max(1, int(valid.sum())) * spec.max_order_wh
    f, y_bits = alloc.floor_bits(spec, bound)
    supply, demand = node.curves(valid)
    levels, volume = await cross(supply, demand, bound)
    price2 = [alloc.deviation_price2_of(spec, [(volume[s], levels[s])]) for s in range(node.n_slots)]
    lap('clearing')
    return Crossed(bound, f, y_bits, supply, demand, levels, volume, price2)


@register
class MeritOrder(Mechanism):
    """The product's double auction (JobSpec.allocation 'merit-order')."""

    name = 'merit-order'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        spec, c = node.spec, await cross_one_market(node, valid, lap)
        rho = await merit_ratios(c.supply, c.demand, c.levels, c.volume, c.bound, c.f)
        group = np.zeros(node.n_participants, dtype=np.int64)
        results, sums = await alloc.stage_one(node, valid, group, c.levels[None, :], rho[:, None, :], c.f, c.y_bits,
                                              c.bound, 1, price=alloc.level_prices(spec, c.levels)[None, :])
        lap('allocation')
        residual = await alloc.open_residuals(c.volume, sums[2, 0], c.levels)
        lap('output')
        return Clearing(slot_outputs(spec.slots, c.levels, c.volume, residual), results, c.price2)
