"""A community on a real low-voltage grid: simbench's LV grids (the optional extra ``[grid]``).

``generate --grid simbench:CODE`` loads one of simbench's 36 standard LV grids (pandapower nets,
shipped inside the simbench package, so nothing is downloaded) and maps the market onto it:

- **Participants**: one per in-service load, named ``h-<bus>-<i>`` (the i-th load at that bus, by
  load index). Its meter also has the PV generators (sgens) at its bus; on a bus with several
  loads they go to the first. PV on a bus without a load is a participant of its own,
  ``pv-<bus>-0``. Batteries (storage, scenarios 1 and 2) are listed with the bus's first
  participant but left out of its readings: simbench's storage profiles keep one sign all year
  (1-LV-rural1--1-sw's 0.15 MWh battery discharges 43 MWh in 2016 and never charges), so they are
  not a battery's power.
- **Feeders from the topology**: every in-service line leaving a transformer's LV busbar (the bus
  and what closed bus-bus switches join to it) starts a feeder, named ``line-<index>``; a bus
  belongs to the feeder it hangs under (lines with an open switch do not connect). A participant
  on the busbar itself is on feeder ``busbar-<bus>``. The transformer is the zone,
  ``trafo-<index>``. A meshed grid (two feeders joined, or a loop back to the busbar) is refused.
- **A day of simbench's own profiles**: simbench's year 2016 is 35,136 quarter hours labelled in
  German local time (CET/CEST: 27 March skips 02:00-02:45, 30 October repeats it), so a day is the
  rows from its local midnight to the next: 96 slots, 92 and 100 on the DST days; the market file
  says so (``start`` with its offset, ``timezone = "Europe/Berlin"``). Each element's mean power in
  a slot becomes Wh exactly (MW x 250,000, rounded to the nearest Wh, halves to even, on the
  float's exact value). A participant's meter reads its load minus its PV.
- **Orders and readings**: the readings are those Wh, so the DSO statistics per feeder are the
  grid's own sums; the orders bid a day-ahead forecast of them (the reading times N(1, 0.15) plus
  N(0, 30) Wh, seeded: the law by which ``generate``'s meters differ from its orders) through
  ``generate``'s bidding rule (``generate.bid``), with its willingness to pay and accept.

``grid_net`` returns the pandapower net with the ``GridMap`` of its participants (bus, loads,
sgens, storage per participant), so a power flow can set each bus's net position later.
"""

from __future__ import annotations

import datetime
import os
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..common.days import parse_day
from ..common.errors import COMMAND_LINE, BadParameter, InputError

__all__ = ['CODE_RE', 'YEAR', 'DEFAULT_DAY', 'Participant', 'GridMap', 'GridDay', 'parse_grid', 'parse_grid_day',
           'load_net', 'map_grid', 'bus_feeders', 'grid_net', 'day_energy', 'write_grid_community']

# simbench's LV grids: 6 grids x scenarios 0 (today), 1, 2 (more PV, heat pumps, EVs, storage) x with or
# without switches (simbench.collect_all_simbench_codes(); tests check the two agree)
CODE_RE = re.compile(r'1-LV-(rural[123]|semiurb[45]|urban6)--[012]-(sw|no_sw)', re.ASCII)
SCHEME = 'simbench:'
YEAR = 2016
DEFAULT_DAY = '2016-06-21'             # midsummer: the PV peak at noon, evening load peaks
TIMEZONE = 'Europe/Berlin'             # the clock of simbench's profile labels
SLOT_MINUTES = 15
WH_PER_MW_SLOT = 250_000               # 1 MW for 15 minutes
FORECAST_SD, FORECAST_NOISE_WH = 0.15, 30.0
INSTALL_HINT = "needs the optional extra: pip install -e '.[grid]' (simbench, pandapower)"


@dataclass(frozen=True)
class Participant:
    """One meter of the grid: its bus, the net's elements behind it, its feeder and zone."""

    name: str
    bus: int
    loads: tuple[int, ...]      # net.load indices
    sgens: tuple[int, ...]      # net.sgen indices (PV)
    storage: tuple[int, ...]    # net.storage indices at the bus (not in the readings, see above)
    feeder: str
    zone: str


@dataclass(frozen=True)
class GridMap:
    """The market's participants on a grid, with the lines and transformers its feeders and zones name."""

    code: str
    participants: tuple[Participant, ...]
    feeder_lines: tuple[tuple[str, int], ...]    # (feeder, the line starting it); busbar feeders have none
    zone_trafos: tuple[tuple[str, int], ...]     # (zone, its transformer)

    def feeders(self) -> dict[str, tuple[str, str]]:
        """{participant: (feeder, zone)}, as ``generate.feeder_map`` (feeders.csv's rows)."""
        return {p.name: (p.feeder, p.zone) for p in self.participants}


@dataclass(frozen=True)
class GridDay:
    """A day of the grid's profiles in Wh per 15-minute slot (+ import, - export per participant)."""

    day: datetime.date
    start: datetime.datetime                # local midnight of the day (aware)
    load_wh: dict[str, tuple[int, ...]]     # the participant's load
    pv_wh: dict[str, tuple[int, ...]]       # its PV generation (>= 0)

    def net_wh(self, participant: str) -> list[int]:
        """The participant's meter reading per slot: load minus PV."""
        return [a - b for a, b in zip(self.load_wh[participant], self.pv_wh[participant], strict=True)]


def parse_grid(text: str) -> str:
    """The simbench code of a ``--grid`` value.

    Args:
        text: ``simbench:CODE``, CODE one of simbench's LV grid codes (e.g. ``1-LV-rural1--0-sw``).

    Returns:
        The code.

    Raises:
        InputError: (``--grid: ...``) another scheme, a path, or a code simbench does not have.
    """
    code = text[len(SCHEME):] if text.startswith(SCHEME) else None
    if code is None or not CODE_RE.fullmatch(code):
        raise InputError(COMMAND_LINE, 0, 'grid', f'{text[:80]!r} is not simbench:CODE with CODE a simbench LV grid '
                         '(1-LV-rural1|rural2|rural3|semiurb4|semiurb5|urban6--0|1|2-sw|no_sw, '
                         'e.g. simbench:1-LV-rural1--0-sw)')
    return code


def parse_grid_day(text: str) -> datetime.date:
    """A day of simbench's profile year.

    Args:
        text: YYYY-MM-DD.

    Returns:
        The date.

    Raises:
        InputError: (``--day: ...``) not a day, or not in 2016.
    """
    try:
        day = parse_day(text)
    except BadParameter:
        raise InputError(COMMAND_LINE, 0, 'day', f'{str(text)[:40]!r} is not a day (YYYY-MM-DD)') from None
    if day.year != YEAR:
        raise InputError(COMMAND_LINE, 0, 'day', f'{day} is outside simbench\'s profiles, which cover '
                         f'{YEAR}-01-01..{YEAR}-12-31')
    return day


def _simbench() -> Any:
    try:
        import simbench
    except ImportError:
        raise InputError(COMMAND_LINE, 0, 'grid', INSTALL_HINT) from None
    return simbench


def load_net(code: str) -> Any:
    """The pandapower net of a simbench LV grid, with its profiles (offline: simbench ships them).

    Args:
        code: a code ``parse_grid`` accepts.

    Returns:
        The pandapowerNet.

    Raises:
        InputError: the code is not a simbench LV grid, or the extra is not installed.
    """
    parse_grid(SCHEME + code)
    return _simbench().get_simbench_net(code)


def _grid_error(code: str, message: str) -> InputError:
    return InputError(COMMAND_LINE, 0, 'grid', f'simbench:{code}: {message}')


def _adjacency(net: Any) -> tuple[dict[int, set[tuple[int, int]]], dict[int, set[int]]]:
    """({bus: {(neighbour, line)}} over in-service lines without an open switch, {bus: buses joined by
    closed bus-bus switches})."""
    open_lines = {int(s.element) for s in net.switch.itertuples() if s.et == 'l' and not s.closed}
    lines: dict[int, set[tuple[int, int]]] = {}
    for index, line in net.line.iterrows():
        if line.in_service and int(index) not in open_lines:
            a, b = int(line.from_bus), int(line.to_bus)
            lines.setdefault(a, set()).add((b, int(index)))
            lines.setdefault(b, set()).add((a, int(index)))
    joined: dict[int, set[int]] = {}
    for s in net.switch.itertuples():
        if s.et == 'b' and s.closed:
            joined.setdefault(int(s.bus), set()).add(int(s.element))
            joined.setdefault(int(s.element), set()).add(int(s.bus))
    return lines, joined


def _reach(start: set[int], lines: Mapping[int, set[tuple[int, int]]], joined: Mapping[int, set[int]],
           stop: set[int]) -> set[int]:
    """Buses connected to start (lines and bus-bus switches), not through stop."""
    seen, todo = set(start), list(start)
    while todo:
        bus = todo.pop()
        for other in [b for b, _ in lines.get(bus, ())] + sorted(joined.get(bus, ())):
            if other not in seen and other not in stop:
                seen.add(other)
                todo.append(other)
    return seen


def _bus_feeders(code: str, net: Any) -> tuple[dict[int, tuple[str, str]], list[tuple[str, int]],
                                               list[tuple[str, int]]]:
    """({bus: (feeder, zone)}, [(feeder, line)], [(zone, trafo)]) from the transformers' LV busbars."""
    lines, joined = _adjacency(net)
    where: dict[int, tuple[str, str]] = {}
    feeder_lines, zone_trafos = [], []
    for index, trafo in net.trafo.sort_index().iterrows():
        if not trafo.in_service:
            continue
        zone = f'trafo-{int(index)}'
        zone_trafos.append((zone, int(index)))
        busbar = _reach({int(trafo.lv_bus)}, {}, joined, set())
        for bus in busbar:
            where[bus] = (f'busbar-{int(trafo.lv_bus)}', zone)
        for bus, line in sorted((b, li) for bb in busbar for b, li in lines.get(bb, ()) if b not in busbar):
            feeder = f'line-{line}'
            reached = _reach({bus}, lines, joined, busbar)
            taken = sorted({where[b][0] for b in reached if b in where})
            if taken:
                raise _grid_error(code, f'a meshed grid: feeder {feeder} joins {", ".join(taken)}; the feeders '
                                  'need a radial grid')
            feeder_lines.append((feeder, line))
            where.update(dict.fromkeys(reached, (feeder, zone)))
    return where, feeder_lines, zone_trafos


def bus_feeders(code: str, net: Any) -> dict[int, tuple[str, str]]:
    """{bus: (feeder, zone)} of every bus under a transformer, as ``map_grid`` names them.

    Args:
        code: the grid's code (for errors).
        net: its pandapower net.

    Returns:
        The map (busbar buses on ``busbar-<bus>``).

    Raises:
        InputError: a meshed grid.
    """
    return _bus_feeders(code, net)[0]


def _elements_by_bus(table: Any) -> dict[int, list[int]]:
    by_bus: dict[int, list[int]] = {}
    for index, row in table.sort_index().iterrows():
        if row.in_service:
            by_bus.setdefault(int(row.bus), []).append(int(index))
    return by_bus


def map_grid(code: str, net: Any) -> GridMap:
    """The participants of a net: one per load, with the PV at its bus, feeders from the topology.

    Args:
        code: the grid's code (for names in errors and the map).
        net: a pandapower net (``load_net``'s).

    Returns:
        The GridMap, participants by bus and load index.

    Raises:
        InputError: (``--grid: ...``) a meshed grid, a participant under no transformer, or no load.
    """
    where, feeder_lines, zone_trafos = _bus_feeders(code, net)
    loads, sgens, storage = (_elements_by_bus(t) for t in (net.load, net.sgen, net.storage))
    participants = []
    for bus in sorted(set(loads) | set(sgens)):
        if bus not in where:
            raise _grid_error(code, f'bus {bus} has a load or generator but is under no transformer')
        feeder, zone = where[bus]
        own = loads.get(bus, [])
        extra = (tuple(sgens.get(bus, ())), tuple(storage.get(bus, ())))
        if not own:
            participants.append(Participant(f'pv-{bus}-0', bus, (), *extra, feeder, zone))
        for i, load in enumerate(own):
            participants.append(Participant(f'h-{bus}-{i}', bus, (load,), *(extra if i == 0 else ((), ())),
                                            feeder, zone))
    if not any(p.loads for p in participants):
        raise _grid_error(code, 'the grid has no load in service')
    return GridMap(code, tuple(participants), tuple(feeder_lines), tuple(zone_trafos))


def grid_net(code: str) -> tuple[Any, GridMap]:
    """A simbench LV grid's pandapower net and the participants mapped onto its loads and generators.

    Args:
        code: a code ``parse_grid`` accepts.

    Returns:
        (the pandapowerNet, its GridMap): each participant's bus, loads, sgens and storage index the net.

    Raises:
        InputError: a bad code, the extra missing, or a grid ``map_grid`` refuses.
    """
    net = load_net(code)
    return net, map_grid(code, net)


def _wh(mw: float) -> int:
    """Wh of a slot at a mean power in MW, rounded on the float's exact value (halves to even)."""
    return round(Fraction(mw) * WH_PER_MW_SLOT)


def day_energy(net: Any, grid: GridMap, day: datetime.date) -> GridDay:
    """A day of simbench's profiles for each participant, in Wh per slot.

    Args:
        net: the grid's net (``grid_net``'s).
        grid: its GridMap.
        day: a day of 2016 (``parse_grid_day``'s).

    Returns:
        The GridDay: the slots from local midnight to the next (96; 92 and 100 on DST days).

    Raises:
        InputError: (``--day: ...``) the net's profiles do not have that day.
    """
    values = _simbench().get_absolute_values(net, profiles_instead_of_study_cases=True)
    start, first, slots = day_rows(day)
    times = net.profiles['load']['time']
    if not 0 <= first <= len(times) - slots or times.iloc[first] != f'{day:%d.%m.%Y} 00:00':
        raise InputError(COMMAND_LINE, 0, 'day', f'{day} is not in the profiles of simbench:{grid.code}')
    rows = slice(first, first + slots)

    def energy(element: str, indices: tuple[int, ...]) -> np.ndarray:
        table = values[(element, 'p_mw')]
        total = np.zeros(slots, dtype=np.int64)
        for index in indices:
            if index in table.columns:  # an element without a profile keeps its 0
                total += np.array([_wh(float(v)) for v in table[index].iloc[rows]], dtype=np.int64)
        return total

    load, pv = {}, {}
    for p in grid.participants:
        load[p.name] = tuple(int(v) for v in energy('load', p.loads))
        pv[p.name] = tuple(int(v) for v in energy('sgen', p.sgens))
    return GridDay(day, start, load, pv)


def day_rows(day: datetime.date) -> tuple[datetime.datetime, int, int]:
    """Where a local calendar day lies in simbench's profiles.

    Args:
        day: a day of 2016.

    Returns:
        (its local midnight, aware; its first row; its number of 15-minute rows: 96, or 92 / 100 on DST days).
    """
    zone = zoneinfo.ZoneInfo(TIMEZONE)

    def midnight(d: datetime.date) -> datetime.datetime:  # in UTC: aware times of one tzinfo subtract as wall time
        return datetime.datetime.combine(d, datetime.time(), zone).astimezone(datetime.UTC)

    def row(d: datetime.date) -> int:
        return int((midnight(d) - midnight(datetime.date(YEAR, 1, 1))).total_seconds()) // (60 * SLOT_MINUTES)
    start = datetime.datetime.combine(day, datetime.time(), zone)
    return start, row(day), row(day + datetime.timedelta(days=1)) - row(day)


def _slot_hours(start: datetime.datetime, slots: int) -> np.ndarray:
    """The local hour of each slot's middle (a DST day's 92 or 100 slots keep the wall clock)."""
    zone = zoneinfo.ZoneInfo(TIMEZONE)
    first = start.astimezone(datetime.UTC)
    middles = (first + datetime.timedelta(minutes=SLOT_MINUTES * j + SLOT_MINUTES / 2) for j in range(slots))
    return np.array([(m.astimezone(zone) - m.astimezone(zone).replace(hour=0, minute=0, second=0,
                                                                         microsecond=0)).total_seconds() / 3600
                     for m in middles])


def _market_text(start: datetime.datetime, zones: bool, network_fee: str) -> str:
    from .config import DEFAULT_CURRENCY
    from .generate import DEFAULT_MARKET as m
    text = ('# Local market on a simbench grid: feed-in tariff (floor) and retail price (ceiling) in currency '
            f'per kWh\n[market]\nprice_floor = {m["price_floor"]}\nprice_ceiling = {m["price_ceiling"]}\n'
            f'tick = {m["tick"]}\nmax_order_wh = {m["max_order_wh"]}\ncurrency = "{DEFAULT_CURRENCY}"\n'
            f'# slot 0 begins at 00:00 of {start:%Y-%m-%d} on simbench\'s profile clock (German local time)\n'
            f'start = {start.isoformat()}\nslot_minutes = {SLOT_MINUTES}\ntimezone = "{TIMEZONE}"\n')
    if zones:
        text += ('# the transformers are the zones: they clear first, then trade across at a network fee per kWh\n'
                 f'zones = true\nnetwork_fee = {network_fee}\n')
    return text


def write_grid_community(out_dir: str, code: str, day: datetime.date, seed: int, zones: int = 0,
                         network_fee: str = '0.010', flex: bool = False) -> tuple[GridMap, dict[str, str], int]:
    """Write orders.csv, readings.csv, feeders.csv and market.toml of a simbench grid's day into out_dir.

    Args:
        out_dir: the directory (created; the four files appear together or not at all).
        code: the simbench LV grid code.
        day: a day of 2016.
        seed: the seed of the forecast errors and the bidding rule.
        zones: 0 for one market, else a zoned market with the transformers as the zones (``[zones]`` table,
            zone column in orders.csv): the grid's number of transformers (1 for every LV grid).
        network_fee: with zoned, the fee per kWh crossing zones (a multiple of the tick).
        flex: also offers.csv and requests.csv (``generate.flex_files`` on the day's load, PV and the
            planned positions the orders bid).

    Returns:
        (the GridMap, {file name: path}, the number of orders).

    Raises:
        InputError: a bad code, day, fee or number of zones, or the extra missing; nothing is written then.
    """
    from .config import parse_config
    from .generate import MAX_ORDER_WH, bid, willingness, zones_table
    from .output import csv_text, write_all
    config_path = os.path.join(out_dir, 'market.toml')
    zoned = zones > 0
    market_text = _market_text(day_rows(day)[0], zoned, network_fee)
    parse_config(config_path, market_text)
    net, grid = grid_net(code)
    if zoned and zones != len(grid.zone_trafos):
        raise InputError(COMMAND_LINE, 0, 'zones', f'simbench:{code}\'s zones are its {len(grid.zone_trafos)} '
                         f'transformer(s): --zones {len(grid.zone_trafos)}, or 0 for one market')
    energy = day_energy(net, grid, day)
    feeders = grid.feeders()
    if zoned:
        market_text += zones_table(feeders)
        parse_config(config_path, market_text)
    names = [p.name for p in grid.participants]
    rng = np.random.default_rng(seed)
    pay, accept = willingness(rng, len(names))
    measured = np.array([energy.net_wh(name) for name in names], dtype=np.int64)
    error = rng.normal(1.0, FORECAST_SD, measured.shape) * measured + rng.normal(0, FORECAST_NOISE_WH, measured.shape)
    forecast = np.clip(np.rint(error), -MAX_ORDER_WH, MAX_ORDER_WH).astype(np.int64)
    orders, readings = [], []
    for p, name in enumerate(names):
        for slot in range(measured.shape[1]):
            readings.append({'participant': name, 'slot': slot, 'net_wh': int(measured[p, slot])})
            order = bid(rng, name, slot, int(forecast[p, slot]), float(pay[p]), float(accept[p]))
            if order is not None:
                orders.append(order | ({'zone': feeders[name][1]} if zoned else {}))
    columns = ['participant', 'slot', 'side', 'energy_wh', 'limit_price'] + (['zone'] if zoned else [])
    feeder_rows = [{'participant': name, 'feeder': f, 'zone': z} for name, (f, z) in feeders.items()]
    files = {'orders.csv': csv_text(columns, orders),
             'readings.csv': csv_text(['participant', 'slot', 'net_wh'], readings),
             'feeders.csv': csv_text(['participant', 'feeder', 'zone'], feeder_rows),  # generate's format
             'market.toml': market_text}
    if flex:
        from .generate import flex_files
        slot_ids = np.arange(measured.shape[1])
        profiles = {'names': names, 'slot_ids': slot_ids, 'hours': _slot_hours(energy.start, len(slot_ids)),
                    'load_wh': np.array([energy.load_wh[n] for n in names]),
                    'pv_wh': np.array([energy.pv_wh[n] for n in names]), 'planned_wh': forecast}
        files |= flex_files(profiles, {n: f for n, (f, _) in feeders.items()}, seed,
                            parse_config(config_path, market_text), day)
    write_all(out_dir, files)
    paths = {name: os.path.join(out_dir, name) for name in files}
    return grid, paths, len(orders)
