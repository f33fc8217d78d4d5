"""Plaintext reference of the grid statistics: the same release rule, sums in the clear."""

from collections.abc import Mapping, Sequence

from .aggregate import FeederMap, plan_release
from .packing import Layout
from .release import GroupTotals


def plain_totals(days: Mapping[str, Sequence[int]], feeder_map: FeederMap, min_cohort: int, level: str,
                 layout: Layout) -> list[GroupTotals]:
    """[GroupTotals] that decrypting the aggregator's bundle for a `level` key must reproduce exactly.

    Args:
        days: {meter: [import_wh per slot] + [export_wh per slot]} of the accepted meters.
        feeder_map: {meter: (feeder, zone)}.
        min_cohort: the aggregator's minimum cohort.
        level: 'feeder' or 'zone'.
        layout: the key's layout (slots and max_meters).

    Returns:
        The released groups' exact sums, without noise.
    """
    plan = plan_release(days, feeder_map, min_cohort, layout.max_meters)
    totals = []
    for name, zone, meters, _ in plan.groups(level):
        sums = [sum(days[m][i] for m in meters) for i in range(layout.values)]
        totals.append(GroupTotals(name, zone, len(meters), sums[:layout.slots], sums[layout.slots:]))
    return totals
