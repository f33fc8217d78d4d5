"""Per-feeder planned net positions on the order shares (the DSO's congestion check): the MPC twin
of mpc_market.market.feeders.feeder_positions_plain. Each participant's planned net import per
slot is linear in its order vector (bought minus sold energy of the weighted columns), so the
nodes sum them per released zone locally and open only those sums: one opening per (zone, slot),
no comparison (zone membership and the orders' verdicts are public, so is the min-cohort rule).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..market.feeders import FeederPosition, released_zones
from . import field as ff
from .allocation import side_energies
from .primitives import P, open_values


async def feeder_positions(node: Any, valid: np.ndarray) -> list[FeederPosition]:
    """Open each released zone's summed planned net import per slot.

    Args:
        node: the MarketNode (its spec's zone_of and feeder_min_cohort, its order shares).
        valid: per participant whether its orders count (the validation's verdicts).

    Returns:
        The positions, by zone then slot (as the reference orders them).
    """
    spec = node.spec
    counted = [p for p, ok in zip(spec.participants, valid, strict=True) if ok]
    zones = released_zones(spec.zone_of, counted, spec.feeder_min_cohort)
    if not zones:
        return []
    names = list(zones)
    row_zone = {p: z for z, members in enumerate(zones.values()) for p in members}
    totals = np.zeros((len(names), node.n_slots), dtype=object)
    layout = node.layout
    for start in range(0, node.n_participants, spec.chunk):
        stop = min(start + spec.chunk, node.n_participants)
        rows = [(i - start, row_zone[p]) for i, p in enumerate(spec.participants[start:stop], start) if p in row_zone]
        if not rows:
            continue
        block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)[..., layout.weighted].astype(np.uint64)
        sells, buys = side_energies(block, layout.levels)
        planned = (ff.to_ints(buys) - ff.to_ints(sells)) % P   # (rows, slots)
        for row, zone in rows:
            totals[zone] += planned[row]
    opened = ff.signed(await open_values(totals % P))
    return [FeederPosition(zone, int(slot), len(zones[zone]), int(opened[z, j]))
            for z, zone in enumerate(names) for j, slot in enumerate(spec.slots)]
