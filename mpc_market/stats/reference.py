"""Plaintext reference of the grid statistics: the same release rule, sums in the clear."""

from .aggregate import plan_release
from .release import GroupTotals


def plain_totals(days, feeder_map, min_cohort, level, layout):
    """[GroupTotals] that decrypting the aggregator's bundle for a `level` key must reproduce exactly.

    days: {meter: [import_wh per slot] + [export_wh per slot]} of the accepted meters.
    """
    plan = plan_release(days, feeder_map, min_cohort, layout.max_meters)
    totals = []
    for name, zone, meters, _ in plan.groups(level):
        sums = [sum(days[m][i] for m in meters) for i in range(layout.values)]
        totals.append(GroupTotals(name, zone, len(meters), sums[:layout.slots], sums[layout.slots:]))
    return totals
