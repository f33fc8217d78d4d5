"""Per-feeder planned net positions for the DSO's congestion check (docs/flexibility.md, "In a
deployment"): with ``feeder_min_cohort = K`` in a zoned market file, a clearing also makes public,
per zone (feeder) and slot, the sum of its participants' planned net imports (bought minus sold
energy of their orders: what the grid will carry if everyone delivers as planned), but only where
at least K of the zone's participants have an order in that slot (the statistics' min-cohort rule:
whether a household has an order in a slot is secret, so that count is compared inside MPC; a zone
with fewer than K participants at all is withheld without one). Participants whose orders the
nodes excluded count neither in the sum nor in the cohort.

This module is the plaintext reference (``feeder_positions_plain``) and the one typed value both
engines produce; mpc_market.mpc.feeders computes the same sums on the order shares.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..common.errors import Malformed
from .book import Book
from .settlement import planned_position

FEEDER_COLUMNS = ('feeder', 'slot', 'slot_start', 'members', 'net_wh')


@dataclass(frozen=True)
class FeederPosition:
    """One zone's planned net import in one slot (Wh; negative: it exports) and how many
    participants it sums (at least the market's feeder_min_cohort)."""

    feeder: str
    slot: int
    members: int
    net_wh: int

    def to_json(self) -> dict[str, Any]:
        """The JSON object of one position (public outputs, the signed public body)."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: object) -> FeederPosition:
        """Parse to_json's object.

        Raises:
            Malformed: not one (wrong keys or types).
        """
        if not isinstance(obj, dict) or sorted(obj) != ['feeder', 'members', 'net_wh', 'slot'] \
                or not isinstance(obj['feeder'], str) \
                or not all(type(obj[k]) is int for k in ('slot', 'members', 'net_wh')):
            raise Malformed('a feeder position is not {feeder, slot, members, net_wh}')
        return cls(obj['feeder'], obj['slot'], obj['members'], obj['net_wh'])


def released_zones(zone_of: Mapping[str, str], counted: Collection[str], min_cohort: int) -> dict[str, list[str]]:
    """The zones that may release positions (at least min_cohort counted members: public) and
    those members (sorted); a slot is then released where min_cohort of them have an order.

    Args:
        zone_of: participant -> zone (public).
        counted: the participants that count (in the clearing, orders valid).
        min_cohort: the least members of a released zone (0: nothing is released).

    Returns:
        {zone: members}, zones sorted.
    """
    if min_cohort <= 0:
        return {}
    members: dict[str, list[str]] = {}
    for participant in sorted(counted):
        if participant in zone_of:
            members.setdefault(zone_of[participant], []).append(participant)
    return {zone: members[zone] for zone in sorted(members) if len(members[zone]) >= min_cohort}


def feeder_positions_plain(book: Book, excluded: Collection[str] = ()) -> list[FeederPosition]:
    """The reference: per zone and slot where at least feeder_min_cohort counted members have an
    order, the sum of their planned net imports (a slot where fewer have one is withheld: its sum
    would be a household's or a few households' position).

    Args:
        book: the market (its config's feeder_min_cohort and zones).
        excluded: participants whose orders do not count.

    Returns:
        The positions, by zone then slot.
    """
    counted = [p for p in book.participants if p not in set(excluded)]
    cohort = book.config.feeder_min_cohort
    out = []
    for zone, members in released_zones(book.zone_of, counted, cohort).items():
        for slot in book.slots:
            present = [book.order_of[(p, slot)] for p in members if (p, slot) in book.order_of]
            if len(present) >= cohort:
                out.append(FeederPosition(zone, slot, len(present), sum(planned_position(o) for o in present)))
    return out


def feeder_rows(config: Any, positions: Sequence[FeederPosition]) -> list[dict[str, object]]:
    """The rows of feeder_positions.csv (grid check --positions reads feeder,slot,net_wh).

    Args:
        config: the market (slot starts).
        positions: the released positions.

    Returns:
        One dict per position, FEEDER_COLUMNS.
    """
    return [{'feeder': f.feeder, 'slot': f.slot, 'slot_start': config.slot_start_text(f.slot),
             'members': f.members, 'net_wh': f.net_wh} for f in positions]
