"""The DSO's congestion loop: a power flow per slot on the planned net positions, and the
flexibility requests that relieve what it finds (docs/flexibility.md, "The congestion loop").

Per slot every participant's planned net import (or a feeder's, spread evenly over the feeder's
participants) is set as one load per bus at power factor 1 on the simbench net (its own loads,
PV and storage switched off: the positions already contain them), and pandapower runs a power
flow. A **violation** is a transformer or line loaded above 100 % or a bus outside 0.95..1.05 pu.
The feeders behind it (an overloaded transformer or a bus on its busbar: every feeder of its zone
whose net flows the same way; a line or a bus: its feeder) get a DSO request each: ``down`` for a
net exporter (raise its import), ``up`` for a net importer, of volume ceil(s x |feeder net|) where
s in (0, 1] is the smallest share (bisection to 1/128) of those feeders' positions that, taken
away, leaves the slot within the targets (95 % loading, 0.955..1.045 pu: a margin for the flow's
non-linearity and for where on the feeder the offers sit), at the DSO's price cap.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_header, csv_records, parse_int, read_text
from .grid import WH_PER_MW_SLOT, GridMap, bus_feeders

LOADING_LIMIT = 100.0                  # % of the rating
VOLTAGE_BAND = (0.95, 1.05)            # pu
LOADING_TARGET = 95.0                  # what a request aims at (%)
VOLTAGE_TARGET = (0.955, 1.045)        # pu
BISECTIONS = 7                         # s to 1/128
DEFAULT_PRICE_CAP = Decimal('0.10')    # currency per kWh the DSO pays at most for relief
POSITION_KINDS = ('participant', 'feeder')
ACTIVATION_COLUMNS = ('participant', 'slot', 'direction', 'activated_wh')


@dataclass(frozen=True)
class Positions:
    """Planned net imports (Wh, + import, - export) per (participant or feeder, slot)."""

    kind: str                                   # 'participant' or 'feeder'
    wh: Mapping[tuple[str, int], int]

    @property
    def slots(self) -> list[int]:
        """The slots with a position, sorted."""
        return sorted({s for _, s in self.wh})


@dataclass(frozen=True)
class Violation:
    """One limit broken in one slot: the element (trafo-I, line-I, bus-I), its value (% or pu)."""

    slot: int
    element: str
    kind: str          # 'loading' or 'voltage'
    value: float


@dataclass(frozen=True)
class SlotFlow:
    """A slot's power flow: the largest loadings, the voltage range and what broke a limit."""

    slot: int
    trafo_pct: float
    line_pct: float
    vm_min: float
    vm_max: float
    violations: tuple[Violation, ...]
    relieved: bool = True   # False: even taking the feeders' whole positions away leaves a violation


@dataclass(frozen=True)
class GridRequest:
    """A DSO request of the loop, in the flex requests format (market.flex.REQUEST_COLUMNS)."""

    request: str
    feeder: str
    slot: int
    direction: str
    volume_wh: int
    price_cap: Decimal


@dataclass(frozen=True)
class CheckResult:
    """Every slot's flow and the requests that relieve the violations."""

    flows: list[SlotFlow]
    requests: list[GridRequest] = field(default_factory=list)


# -- inputs --------------------------------------------------------------------------------------

def load_positions(path: str) -> Positions:
    """A positions CSV: ``participant,slot,net_wh`` (the readings' format) or ``feeder,slot,net_wh``.

    Args:
        path: the file.

    Returns:
        The Positions, of the kind the header names.

    Raises:
        InputError: naming the file, line and field of the first bad value, or a second row of a key.
    """
    text = read_text(path)
    header = csv_header(path, text) if text.strip() else []
    kind = next((k for k in POSITION_KINDS if k in header), 'participant')
    wh: dict[tuple[str, int], int] = {}
    for line, row in csv_records(path, text, (kind, 'slot', 'net_wh')):
        name = row[kind]
        if not is_name(name):
            raise InputError(path, line, kind, f'{name[:80]!r} is not {NAME_RULE}')
        slot = parse_int(path, line, 'slot', row['slot'])
        if slot < 0:
            raise InputError(path, line, 'slot', f'must be >= 0, got {slot}')
        if (name, slot) in wh:
            raise InputError(path, line, kind, f'second position of {name} in slot {slot}')
        wh[(name, slot)] = parse_int(path, line, 'net_wh', row['net_wh'])
    if not wh:
        raise InputError(path, 2, 'file', 'no positions')
    return Positions(kind, wh)


def apply_activations(positions: Positions, path: str, feeder_of: Mapping[str, str]) -> Positions:
    """The positions after a flexibility round: each activation's owner (or its feeder) moved by it,
    ``up`` lowering the net import, ``down`` raising it (market.flex.adjusted_position).

    Args:
        positions: the planned positions.
        path: activations.csv of ``flex clear`` (participant,slot,direction,activated_wh, ...).
        feeder_of: {participant: feeder}, for feeder positions.

    Returns:
        The adjusted Positions.

    Raises:
        InputError: a malformed row, or an activated participant on no feeder of feeder positions.
    """
    from .flex import adjusted_position
    wh = dict(positions.wh)
    for line, row in csv_records(path, read_text(path), ACTIVATION_COLUMNS):
        activated = parse_int(path, line, 'activated_wh', row['activated_wh'])
        if not activated:
            continue
        slot = parse_int(path, line, 'slot', row['slot'])
        if row['direction'] not in ('up', 'down'):
            raise InputError(path, line, 'direction', f"must be 'up' or 'down', got {row['direction'][:40]!r}")
        name = row['participant']
        if positions.kind == 'feeder':
            if name not in feeder_of:
                raise InputError(path, line, 'participant', f'{name[:80]!r} is on no feeder of the grid')
            name = feeder_of[name]
        wh[(name, slot)] = adjusted_position(row['direction'], wh.get((name, slot), 0), activated)
    return Positions(positions.kind, wh)


# -- the power flow ------------------------------------------------------------------------------

RERUN = {'bus_pq': True, 'trafo': False, 'gen': False}   # pandapower's recycle: only the loads changed


class FlowModel:
    """The grid's net with one load per participant bus, run slot by slot."""

    def __init__(self, net: Any, grid: GridMap) -> None:
        """Copy the net, switch its own loads, PV and storage off and add one load per bus.

        Args:
            net: the simbench pandapower net (``grid.grid_net``'s).
            grid: its GridMap.
        """
        import pandapower as pp
        self.grid = grid
        self.net = copy.deepcopy(net)
        for table in (self.net.load, self.net.sgen, self.net.storage):
            table['in_service'] = False
        buses = sorted({p.bus for p in grid.participants})
        self.load_of = {bus: int(pp.create_load(self.net, bus, p_mw=0.0, q_mvar=0.0, name=f'position-{bus}'))
                        for bus in buses}
        self.where = bus_feeders(grid.code, net)
        self.members: dict[str, list[str]] = {}
        for p in grid.participants:
            self.members.setdefault(p.feeder, []).append(p.name)
        self.bus_of = {p.name: p.bus for p in grid.participants}
        self.grid_feeder = {p.name: p.feeder for p in grid.participants}
        self.zone_of_feeder = {p.feeder: p.zone for p in grid.participants}
        self.trafo_zone = {trafo: zone for zone, trafo in grid.zone_trafos}

    def participant_wh(self, positions: Positions, slot: int) -> dict[str, float]:
        """Each participant's net import in a slot (a feeder's spread evenly over its participants)."""
        if positions.kind == 'participant':
            return {p.name: float(positions.wh.get((p.name, slot), 0)) for p in self.grid.participants}
        return {name: positions.wh.get((feeder, slot), 0) / len(names)
                for feeder, names in self.members.items() for name in names}

    def run(self, by_participant: Mapping[str, float], again: bool = False) -> Any:
        """One power flow with these net imports (Wh of the slot); the net with its results.

        Args:
            by_participant: net import per participant.
            again: a rerun of the same slot with other loads (a relief's bisection): pandapower
                reuses the last run's admittance matrices and starts from its voltages (2-3x
                faster; the results agree within the solver's tolerance). A slot's first run
                is always a full one, so no slot's results depend on the slots before it.

        Raises:
            InputError: the power flow does not converge.
        """
        import pandapower as pp
        per_bus = dict.fromkeys(self.load_of, 0.0)
        for name, value in by_participant.items():
            per_bus[self.bus_of[name]] += value
        for bus, value in per_bus.items():
            self.net.load.at[self.load_of[bus], 'p_mw'] = value / WH_PER_MW_SLOT
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                pp.runpp(self.net, numba=False, **({'recycle': RERUN} if again else {}))
        except pp.LoadflowNotConverged:
            raise InputError('grid', 0, 'power flow', 'does not converge on these positions') from None
        return self.net

    def violations(self, slot: int, loading: float = LOADING_LIMIT,
                   band: tuple[float, float] = VOLTAGE_BAND) -> list[Violation]:
        """The limits the last run broke (loading above ``loading`` %, voltage outside ``band``)."""
        net, found = self.net, []
        for index, row in net.res_trafo.iterrows():
            if row.loading_percent > loading:
                found.append(Violation(slot, f'trafo-{int(index)}', 'loading', float(row.loading_percent)))
        for index, row in net.res_line.iterrows():
            if row.loading_percent > loading:
                found.append(Violation(slot, f'line-{int(index)}', 'loading', float(row.loading_percent)))
        for index, row in net.res_bus.iterrows():
            if not math.isnan(row.vm_pu) and not band[0] <= row.vm_pu <= band[1]:
                found.append(Violation(slot, f'bus-{int(index)}', 'voltage', float(row.vm_pu)))
        return found

    def feeders_behind(self, violation: Violation, feeder_wh: Mapping[str, float]) -> set[str]:
        """The feeders whose positions cause a violation (see the module's docstring)."""
        kind, index = violation.element.split('-')
        zone: str | None = None
        if kind == 'trafo':
            zone = self.trafo_zone.get(int(index))
            sign = 1 if float(self.net.res_trafo.at[int(index), 'p_hv_mw']) > 0 else -1
        else:
            if kind == 'line':
                line = self.net.line.loc[int(index)]
                buses = [int(line.from_bus), int(line.to_bus)]
            else:
                buses = [int(index)]
            feeders = {self.where[b] for b in buses if b in self.where}
            if not feeders:
                return set()
            # a line or bus on the busbar stands for its whole zone; else its feeder
            feeder, zone = min(feeders)
            if not feeder.startswith('busbar-'):
                return {feeder} if feeder_wh.get(feeder, 0.0) != 0 else set()
            sign = (1 if violation.value < 1 else -1) if violation.kind == 'voltage' else \
                (1 if sum(feeder_wh.values()) > 0 else -1)
        return {f for f, wh in feeder_wh.items() if self.zone_of_feeder.get(f) == zone and wh * sign > 0}


def feeder_totals(model: FlowModel, by_participant: Mapping[str, float]) -> dict[str, float]:
    """{feeder: its net import} of the participants' positions."""
    totals: dict[str, float] = {}
    for p in model.grid.participants:
        totals[p.feeder] = totals.get(p.feeder, 0.0) + by_participant.get(p.name, 0.0)
    return totals


def _relief(model: FlowModel, slot: int, base: Mapping[str, float], feeders: set[str]) -> float | None:
    """The smallest share s (to 1/2^BISECTIONS) of the feeders' positions whose removal meets the
    targets, None if even s = 1 does not."""
    def ok(share: float) -> bool:
        scaled = {name: value * (1 - share) if model.grid_feeder[name] in feeders else value
                  for name, value in base.items()}
        model.run(scaled, again=True)
        return not model.violations(slot, LOADING_TARGET, VOLTAGE_TARGET)
    if not ok(1.0):
        return None
    low, high = 0.0, 1.0
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        low, high = (low, middle) if ok(middle) else (middle, high)
    return high


def check(model: FlowModel, positions: Positions, slots: Iterable[int] | None = None,
          price_cap: Decimal = DEFAULT_PRICE_CAP) -> CheckResult:
    """Run the power flow of every slot, find the violations and the requests that relieve them.

    Args:
        model: the grid's FlowModel.
        positions: the planned (or adjusted) net positions.
        slots: the slots to check (default: every slot with a position).
        price_cap: the requests' cap, currency per kWh.

    Returns:
        The CheckResult: flows by slot, requests by slot then feeder (id dso-<feeder>-<slot>).

    Raises:
        InputError: a power flow does not converge, or feeder positions name a feeder the grid lacks.
    """
    if positions.kind == 'feeder':
        unknown = sorted({f for f, _ in positions.wh} - set(model.members))
        if unknown:
            raise InputError('positions', 0, 'feeder', f'{unknown[0]!r} is not a feeder of simbench:{model.grid.code}')
    flows, requests = [], []
    for slot in positions.slots if slots is None else sorted(slots):
        base = model.participant_wh(positions, slot)
        net = model.run(base)
        found = model.violations(slot)
        flow = SlotFlow(slot, float(net.res_trafo.loading_percent.max()), float(net.res_line.loading_percent.max()),
                        float(net.res_bus.vm_pu.min()), float(net.res_bus.vm_pu.max()), tuple(found))
        if found:
            totals = feeder_totals(model, base)
            feeders = set().union(*(model.feeders_behind(v, totals) for v in found))
            share = _relief(model, slot, base, feeders) if feeders else None
            for feeder in sorted(feeders):
                volume = math.ceil((1.0 if share is None else share) * abs(totals[feeder]))
                if volume:
                    requests.append(GridRequest(f'dso-{feeder}-{slot}', feeder, slot,
                                                'down' if totals[feeder] < 0 else 'up', volume, price_cap))
            flow = SlotFlow(flow.slot, flow.trafo_pct, flow.line_pct, flow.vm_min, flow.vm_max, flow.violations,
                            share is not None)
        flows.append(flow)
    return CheckResult(flows, requests)


def positions_from_orders(orders: Iterable[Any]) -> Positions:
    """The planned positions of energy orders (+energy a buy, -energy a sell), per participant.

    Args:
        orders: market.orders.Order rows.

    Returns:
        Participant Positions.
    """
    from .settlement import planned_position
    return Positions('participant', {(o.participant, o.slot): planned_position(o) for o in orders})


def feeder_positions(positions: Positions, feeder_of: Mapping[str, str]) -> Positions:
    """Participant positions summed per feeder (what the nodes release to the DSO); participants
    on no feeder of the grid are left out.

    Args:
        positions: participant Positions.
        feeder_of: {participant: feeder}.

    Returns:
        Feeder Positions.
    """
    if positions.kind == 'feeder':
        return positions
    wh: dict[tuple[str, int], int] = {}
    for (name, slot), value in positions.wh.items():
        if name in feeder_of:
            key = (feeder_of[name], slot)
            wh[key] = wh.get(key, 0) + value
    return Positions('feeder', wh)
