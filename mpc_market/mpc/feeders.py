"""Per-feeder planned net positions on the order shares (the DSO's congestion check): the MPC twin
of mpc_market.market.feeders.feeder_positions_plain. Each participant's planned net import per
slot is linear in its order vector (bought minus sold energy of the weighted columns), and so is
whether it has an order there (1 - its no-order column): the nodes sum both per zone locally, open
one comparison per (zone, slot) of the order count against the cohort, and open the sums of the
released cells only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..market.feeders import FeederPosition, released_zones
from . import field as ff
from .allocation import side_energies
from .primitives import P, bits_needed, less_than_zero, open_values


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
    counts = np.zeros((len(names), node.n_slots), dtype=object)
    layout = node.layout
    for start in range(0, node.n_participants, spec.chunk):
        stop = min(start + spec.chunk, node.n_participants)
        rows = [(i - start, row_zone[p]) for i, p in enumerate(spec.participants[start:stop], start) if p in row_zone]
        if not rows:
            continue
        block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)
        sells, buys = side_energies(block[..., layout.weighted].astype(np.uint64), layout.levels)
        planned = (ff.to_ints(buys) - ff.to_ints(sells)) % P   # (rows, slots)
        ordered = (1 - ff.to_ints(block[..., layout.no_order])) % P   # validated one-hot: 1 with an order
        for row, zone in rows:
            totals[zone] += planned[row]
            counts[zone] += ordered[row]
    largest = max(len(members) for members in zones.values())
    few = await open_values(await less_than_zero((counts - spec.feeder_min_cohort) % P,
                                                 bits_needed(largest + spec.feeder_min_cohort)))
    cells = [(z, j) for z in range(len(names)) for j in range(node.n_slots) if int(few[z, j]) == 0]
    if not cells:
        return []
    opened = ff.signed(await open_values(np.array([[totals[c], counts[c]] for c in cells], dtype=object) % P))
    return [FeederPosition(names[z], int(spec.slots[j]), int(count), int(net))
            for (z, j), (net, count) in zip(cells, opened, strict=True)]
