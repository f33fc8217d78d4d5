"""Per-household time series in, orders and meter readings out (``mpc-market import profiles``).

Two input formats, told apart by their header:

- **gsy-e profiles**, one file per household (``INTERVAL;POWER(W)``, comma or semicolon separated,
  the header optional, gsy-e's `upload-file-formats`): INTERVAL is ``hh:mm`` or a date and time
  ``YYYY-MM-DDThh:mm[:ss]`` / ``YYYY-MM-DD hh:mm:ss``, POWER(W) the power in W from that instant.
  As in gsy-e (``gsy_framework.read_user_profile``, ``TIME_ZONE = 'UTC'``) a date and time without
  an offset is UTC (an offset or Z may be given), and ``hh:mm`` is that long after the start of the
  simulation, here the market's ``start``. The sign is gsy-e's Smart Meter's: positive = consumption
  (import), negative = production (export); a gsy-e PV profile (positive = production) is given with
  ``--pv`` and counts negative. The household is the file's stem, or ``--participant``.
- **long CSV** ``participant,datetime,power_w`` or ``participant,datetime,energy_wh``: datetimes are
  ISO 8601 with an offset or Z; energy_wh is the energy of the interval starting there (+ import,
  - export).

**Onto the slots, exactly.** Each value holds from its instant until the participant's next one; the
last as long as the step before it (one slot if it is alone). Power over an interval is energy
(W x s / 3600); an interval's energy spreads over the slots it overlaps in proportion to time. All
of it is exact (fractions of Wh). The series must start and end on the market's slot grid (``start``
+ k x ``slot_minutes``) at or after ``start``. The series of one participant add up (load files
minus PV files). **Rounding**: per participant, each slot's exact Wh is rounded down, and the
participant's total, rounded to the nearest Wh (halves up), is made up by adding 1 Wh to the slots
with the largest remainders (the earlier slot first on a tie): every slot is within 1 Wh of its
exact energy and the slots sum to the rounded total; whole-Wh inputs pass through unchanged.

**Bidding rule.** The series is the forecast: each slot's net position is one order, a buy of the
net import at ``buy_limit`` or a sell of the net export at ``sell_limit`` (none when it nets 0 Wh);
by default buyers bid the ceiling and sellers ask the floor less and plus a quarter of the band
(rounded down to the tick), so each keeps a margin over the retailer and every buy crosses every
sell. An order's energy is capped at ``max_order_wh`` (the CLI warns). The readings are the
series itself, or with ``forecast_error`` the series times (1 + e), e ~ N(0, error) per reading
(seeded), as ``generate`` simulates meters.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ..common.errors import COMMAND_LINE, InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_header, csv_records, read_text
from .config import SIGNED_PRICE_RULE, MarketConfig, bounded_signed_price
from .output import csv_text, write_all

__all__ = ['Sample', 'Series', 'BiddingRule', 'ImportSummary', 'bidding_rule', 'read_series', 'slot_energy',
           'round_exact', 'net_positions', 'import_profiles']

GSY_TIME, GSY_POWER = 'INTERVAL', 'POWER(W)'
LONG_COLUMNS = ('participant', 'datetime')
LONG_QUANTITIES = ('power_w', 'energy_wh')
ORDER_COLUMNS = ('participant', 'slot', 'slot_start', 'side', 'energy_wh', 'limit_price')
READING_COLUMNS = ('participant', 'slot', 'slot_start', 'net_wh')
MAX_VALUE = 10 ** 9          # |W| or |Wh| of one value: far above a household, keeps the fractions small
MAX_SPAN_DAYS = 366          # one series covers at most a year of slots
MAX_PARTICIPANTS = 100_000   # as generate's
MAX_PARTICIPANT_SLOTS = 1_000_000

TIME_OF_DAY = re.compile(r'([01][0-9]|2[0-3]):([0-5][0-9])', re.ASCII)
DATE_TIME = re.compile(r'[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(Z|[+-][0-9]{2}:[0-9]{2})?',
                       re.ASCII)
NUMBER = re.compile(r'[+-]?([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,2})?', re.ASCII)
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Sample:
    """One value of a series, holding from ``at`` until the series' next instant."""

    at: datetime.datetime   # aware
    value: Fraction         # W (power) or Wh (the interval's energy)
    line: int               # where it was read, for errors


@dataclass(frozen=True)
class Series:
    """One participant's time series as read from one file."""

    participant: str
    path: str
    quantity: str                   # 'power_w' or 'energy_wh'
    samples: tuple[Sample, ...]     # sorted by time, no instant twice
    value_field: str                # the value's column, for errors ('POWER(W)', 'power_w', 'energy_wh')
    sign: int = 1                   # -1: a production profile (gsy-e PV: positive = production)


@dataclass(frozen=True)
class BiddingRule:
    """The limits of the orders a forecast becomes: a net import buys, a net export sells."""

    buy_limit: Decimal
    sell_limit: Decimal


@dataclass(frozen=True)
class ImportSummary:
    """What ``import_profiles`` wrote."""

    orders_path: str
    readings_path: str
    participants: int
    first_slot: int
    last_slot: int
    buys: int
    sells: int
    readings: int
    capped: tuple[tuple[str, int, int], ...]   # (participant, slot, net Wh) of each order capped at max_order_wh
    rule: BiddingRule


def _limit(option: str, text: str | None, default: Decimal) -> Decimal:
    if text is None:
        return default
    try:
        value = Decimal(text.strip()) if len(text) <= 40 else None
    except InvalidOperation:
        value = None
    if value is None or bounded_signed_price(value) is None:
        raise InputError(COMMAND_LINE, 0, option, f'must be {SIGNED_PRICE_RULE}, got {text[:40]!r}')
    return value


def bidding_rule(config: MarketConfig, buy_limit: str | None = None, sell_limit: str | None = None) -> BiddingRule:
    """The bidding rule: the given limits, else the ceiling minus and the floor plus a quarter of the band.

    Args:
        config: the market (floor, ceiling, tick).
        buy_limit: the buy orders' limit price as given (``--buy-limit``), or None for the default.
        sell_limit: the sell orders' limit price, or None for the default.

    Returns:
        The BiddingRule; the default spread is (levels - 1) // 4 ticks, 0.023 on 0.047..0.139 by 0.001.

    Raises:
        InputError: a limit that is not a price (``--buy-limit: ...``).
    """
    spread = (config.levels - 1) // 4 * config.tick
    return BiddingRule(_limit('buy-limit', buy_limit, config.price_ceiling - spread),
                       _limit('sell-limit', sell_limit, config.price_floor + spread))


def _number(path: str, line: int, field: str, text: str) -> Fraction:
    if not NUMBER.fullmatch(text):
        hint = ' (a decimal point, not a comma)' if re.fullmatch(r'[+-]?[0-9]+,[0-9]+', text) else ''
        raise InputError(path, line, field, f'{text[:40]!r} is not a number{hint}')
    value = Fraction(Decimal(text))
    if abs(value) > MAX_VALUE:
        raise InputError(path, line, field, f'{text[:40]} is beyond +-{MAX_VALUE}')
    return value


def _instant(path: str, line: int, field: str, text: str, need_offset: bool) -> datetime.datetime:
    """An aware instant of an ISO 8601 date and time (no offset: UTC, gsy-e's, unless need_offset)."""
    if not DATE_TIME.fullmatch(text):
        raise InputError(path, line, field, f'{text[:40]!r} is not a date and time such as 2026-06-17T00:15:00Z')
    try:
        at = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(path, line, field, f'{text[:40]!r} is not a real date and time') from None
    if at.tzinfo is None:
        if need_offset:
            raise InputError(path, line, field, f'{text!r} needs a UTC offset or Z (a local time is ambiguous '
                                                'on a DST change)')
        at = at.replace(tzinfo=datetime.UTC)
    if at < EPOCH:
        raise InputError(path, line, field, f'{text!r} is before 1970')
    return at


def _utc(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _sorted_samples(path: str, field: str, samples: list[Sample]) -> tuple[Sample, ...]:
    samples.sort(key=lambda s: (s.at, s.line))
    for before, after in zip(samples, samples[1:], strict=False):
        if after.at == before.at:
            raise InputError(path, after.line, field, f'{_utc(after.at)} again (first on line {before.line})')
    return tuple(samples)


def _participant_of(path: str, participant: str | None) -> str:
    if participant is not None:
        if not is_name(participant):
            raise InputError(COMMAND_LINE, 0, 'participant', f'{participant[:80]!r} is not {NAME_RULE}')
        return participant
    stem = os.path.splitext(os.path.basename(path))[0]
    if not is_name(stem):
        raise InputError(path, 0, 'participant', f'the file name {stem[:80]!r} is not {NAME_RULE}: rename the '
                                                 'file or give --participant')
    return stem


def _delimiter(first: str) -> str:
    return ';' if ';' in first else ','


def _gsy_series(path: str, text: str, config: MarketConfig, participant: str, sign: int) -> Series:
    """A gsy-e profile INTERVAL;POWER(W) as a power series."""
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), '')
    samples: list[Sample] = []
    header = False
    kinds: dict[str, int] = {}  # 'hh:mm' or 'date and time' -> its first line: one kind per file, as in gsy-e
    try:
        for line, row in enumerate(csv.reader(lines, delimiter=_delimiter(first)), 1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise InputError(path, line, 'row', f'{len(row)} fields; a gsy-e profile has 2: '
                                                    f'{GSY_TIME};{GSY_POWER}')
            when, power = (cell.strip() for cell in row)
            if not samples and not header and not NUMBER.fullmatch(power):  # the header line
                if when.upper() != GSY_TIME or power.upper().rstrip(':').replace(' ', '') != GSY_POWER:
                    raise InputError(path, line, 'header', f'{";".join(row)[:60]!r}: expected {GSY_TIME};{GSY_POWER} '
                                                           '(gsy-e\'s power profile) or a first row of values')
                header = True
                continue
            if TIME_OF_DAY.fullmatch(when):
                kind = 'hh:mm'
            elif DATE_TIME.fullmatch(when):
                kind = 'date and time'
            else:
                raise InputError(path, line, GSY_TIME, f'{when[:40]!r} is not hh:mm or a date and time such as '
                                                       '2026-06-17T00:15')
            kinds.setdefault(kind, line)
            if len(kinds) > 1:
                other = next(k for k in kinds if k != kind)
                raise InputError(path, line, GSY_TIME, f'{when[:40]!r} is not a {other} like line {kinds[other]}: '
                                                       'one kind of INTERVAL per file')
            if kind == 'hh:mm':
                if config.start is None:
                    raise InputError(path, line, GSY_TIME, 'hh:mm counts from the market\'s start, and the market '
                                                           'file gives none')
                hours, minutes = when.split(':')
                at = config.start + datetime.timedelta(hours=int(hours), minutes=int(minutes))
            else:
                at = _instant(path, line, GSY_TIME, when, need_offset=False)
            samples.append(Sample(at, _number(path, line, GSY_POWER, power), line))
    except csv.Error as exc:
        raise InputError(path, 1, 'row', f'not CSV ({exc})') from None
    if not samples:
        raise InputError(path, 1, 'file', 'no values')
    return Series(participant, path, 'power_w', _sorted_samples(path, GSY_TIME, samples), GSY_POWER, sign)


def _long_series(path: str, text: str) -> list[Series]:
    """A long CSV participant,datetime,power_w|energy_wh as one series per participant."""
    header = csv_header(path, text)
    quantities = [q for q in LONG_QUANTITIES if q in header]
    if len(quantities) != 1:
        raise InputError(path, 1, 'header', f'needs one column power_w (W) or energy_wh (Wh per interval), got '
                                            f'{", ".join(header)[:80]!r}')
    quantity = quantities[0]
    by_participant: dict[str, list[Sample]] = {}
    for line, row in csv_records(path, text, LONG_COLUMNS + (quantity,)):
        name = row['participant']
        if not is_name(name):
            raise InputError(path, line, 'participant', f'{name[:80]!r} is not {NAME_RULE}')
        at = _instant(path, line, 'datetime', row['datetime'], need_offset=True)
        by_participant.setdefault(name, []).append(Sample(at, _number(path, line, quantity, row[quantity]), line))
    if not by_participant:
        raise InputError(path, 2, 'file', 'no values')
    return [Series(name, path, quantity, _sorted_samples(path, 'datetime', samples), quantity)
            for name, samples in sorted(by_participant.items())]


def read_series(path: str, config: MarketConfig, participant: str | None = None, pv: bool = False) -> list[Series]:
    """The series of one file: a gsy-e profile (one household) or a long CSV (one per participant).

    Args:
        path: the file.
        config: the market (its start places a gsy-e profile's hh:mm times).
        participant: a gsy-e profile's household (default: the file's stem).
        pv: a gsy-e PV profile (positive = production): its power counts negative.

    Returns:
        The series, each sorted by time.

    Raises:
        InputError: an unreadable file, a bad header, row, time or number, an instant twice, or
            participant/pv given for a long CSV (which names its participants and signs its values).
    """
    text = read_text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), '')
    if not first:
        raise InputError(path, 1, 'file', 'empty file')
    if 'participant' in (cell.strip().lower() for cell in re.split(r'[;,\t]', first)):
        if participant is not None or pv:
            option = 'participant' if participant is not None else 'pv'
            raise InputError(COMMAND_LINE, 0, option, f'{path} is a long CSV: it names its participants and signs '
                                                      'its values (--participant and --pv are for gsy-e profiles)')
        return _long_series(path, text)
    return [_gsy_series(path, text, config, _participant_of(path, participant), -1 if pv else 1)]


def slot_energy(series: Series, config: MarketConfig) -> tuple[dict[int, Fraction], dict[int, int]]:
    """The exact energy of a series in each slot it covers, signed (+ import, - export).

    Args:
        series: the series.
        config: the market: slot k is [start + k x slot_minutes, start + (k+1) x slot_minutes).

    Returns:
        ({slot: Wh as a Fraction}, {slot: the line of the first value that reaches the slot}).

    Raises:
        InputError: the market has no start, or the series begins before it, off its slot grid,
            ends off the grid, or spans more than MAX_SPAN_DAYS.
    """
    samples, path, first = series.samples, series.path, series.samples[0]
    time_field = GSY_TIME if series.value_field == GSY_POWER else 'datetime'
    if config.start is None:
        raise InputError(path, first.line, time_field, 'the market file gives no start: add start = ... (the '
                                                       'instant slot 0 begins) to place the series on slots')
    slot_s = 60 * config.slot_minutes
    times = [int((s.at - config.start).total_seconds()) for s in samples]
    step = times[-1] - times[-2] if len(times) > 1 else slot_s
    times.append(times[-1] + step)
    if times[0] < 0:
        raise InputError(path, first.line, time_field, f'{_utc(first.at)} is before the market\'s start '
                                                       f'{config.slot_start_text(0)}')
    for at, sample in ((times[0], first), (times[-1], samples[-1])):
        if at % slot_s:
            what = 'begins' if sample is first else 'ends'
            raise InputError(path, sample.line, time_field,
                             f'the series {what} at {_utc(config.start + datetime.timedelta(seconds=at))}, '
                             f'not on the market\'s {config.slot_minutes}-minute slot grid from '
                             f'{config.slot_start_text(0)}')
    if times[-1] - times[0] > MAX_SPAN_DAYS * 86400:
        raise InputError(path, samples[-1].line, time_field, f'the series spans more than {MAX_SPAN_DAYS} days')
    energy: dict[int, Fraction] = {}
    origin: dict[int, int] = {}
    for sample, a, b in zip(samples, times, times[1:], strict=False):
        total = sample.value * (b - a) / 3600 if series.quantity == 'power_w' else sample.value
        for slot in range(a // slot_s, (b - 1) // slot_s + 1):
            overlap = min(b, (slot + 1) * slot_s) - max(a, slot * slot_s)
            energy[slot] = energy.get(slot, Fraction(0)) + series.sign * total * overlap / (b - a)
            origin.setdefault(slot, sample.line)
    return energy, origin


def round_exact(values: dict[int, Fraction]) -> dict[int, int]:
    """Whole Wh per slot, each within 1 Wh of its value, summing to the total rounded (halves up).

    Args:
        values: exact Wh per slot.

    Returns:
        {slot: Wh}: each value rounded down, plus 1 Wh on the slots with the largest remainders
        (the earlier slot first on a tie) until the sum is floor(total + 1/2).
    """
    rounded = {slot: math.floor(value) for slot, value in values.items()}
    missing = math.floor(sum(values.values(), Fraction(0)) + Fraction(1, 2)) - sum(rounded.values())
    for slot in sorted(values, key=lambda s: (rounded[s] - values[s], s))[:missing]:
        rounded[slot] += 1
    return rounded


def net_positions(series: Sequence[Series], config: MarketConfig
                  ) -> tuple[dict[str, dict[int, int]], dict[tuple[str, int], tuple[str, int, str]]]:
    """Each participant's net Wh per slot, its series added up and rounded by ``round_exact``.

    Args:
        series: every series read.
        config: the market.

    Returns:
        ({participant: {slot: net Wh}}, {(participant, slot): (path, line, field) of the value that
        first reached the slot}).

    Raises:
        InputError: as ``slot_energy``; more than MAX_PARTICIPANTS participants or
            MAX_PARTICIPANT_SLOTS participant-slots.
    """
    exact: dict[str, dict[int, Fraction]] = {}
    origin: dict[tuple[str, int], tuple[str, int, str]] = {}
    for one in series:
        energy, lines = slot_energy(one, config)
        slots = exact.setdefault(one.participant, {})
        for slot, wh in energy.items():
            slots[slot] = slots.get(slot, Fraction(0)) + wh
            origin.setdefault((one.participant, slot), (one.path, lines[slot], one.value_field))
    if len(exact) > MAX_PARTICIPANTS or len(origin) > MAX_PARTICIPANT_SLOTS:
        raise InputError(series[0].path, 0, 'file', f'{len(exact)} participants and {len(origin)} participant-slots;'
                                                    f' at most {MAX_PARTICIPANTS} and {MAX_PARTICIPANT_SLOTS}')
    return {name: round_exact(slots) for name, slots in sorted(exact.items())}, origin


def _measured(net: dict[str, dict[int, int]], config: MarketConfig, error: float, seed: int
              ) -> Iterator[tuple[str, int, int]]:
    """(participant, slot, reading): the net itself, or times (1 + e), e ~ N(0, error), clipped to the range."""
    import numpy as np
    rng = np.random.default_rng(seed)
    limit = config.max_reading_wh
    for name, slots in net.items():
        for slot, wh in sorted(slots.items()):
            reading = wh if not error else int(np.rint(wh * (1 + rng.normal(0, error))))
            yield name, slot, max(-limit, min(limit, reading))


def import_profiles(series: Sequence[Series], config: MarketConfig, out_dir: str, rule: BiddingRule,
                    forecast_error: float = 0.0, seed: int = 1) -> ImportSummary:
    """Write OUT/orders.csv and OUT/readings.csv of the series: all or nothing, 0600.

    Args:
        series: every series read (``read_series``).
        config: the market the orders are for.
        out_dir: the output directory (created if needed).
        rule: the bidding rule.
        forecast_error: the readings' relative error (0.1: 10 %); 0 makes the readings the series.
        seed: the forecast error's random seed.

    Returns:
        The ImportSummary (its ``capped`` orders the caller warns about).

    Raises:
        InputError: as ``net_positions``; a slot whose net is beyond max_reading_wh, a participant
            in no zone of a zoned market, or no slot with a net position (named by file, line, field).
    """
    net, origin = net_positions(series, config)
    for (name, slot), (path, line, field) in origin.items():
        wh = net[name][slot]
        if abs(wh) > config.max_reading_wh:
            raise InputError(path, line, field, f'{name} nets {wh} Wh in slot {slot} ({config.slot_start_text(slot)}),'
                                                f' beyond the market\'s max_reading_wh {config.max_reading_wh}')
    if config.zoned:
        for one in series:
            if one.participant not in config.zone_of:
                raise InputError(one.path, one.samples[0].line, 'participant', f'{one.participant} is in no zone of '
                                 'the market file\'s [zones] (a zoned market needs each participant\'s zone)')
    orders, capped = [], []
    for name, slots in net.items():
        for slot, wh in sorted(slots.items()):
            if wh == 0:
                continue
            energy = min(abs(wh), config.max_order_wh)
            if energy < abs(wh):
                capped.append((name, slot, wh))
            side, limit = ('buy', rule.buy_limit) if wh > 0 else ('sell', rule.sell_limit)
            orders.append({'participant': name, 'slot': slot, 'slot_start': config.slot_start_text(slot), 'side': side,
                           'energy_wh': energy, 'limit_price': str(limit)})
    if not orders:
        raise InputError(series[0].path, 0, 'file', 'every slot nets 0 Wh: no orders to write')
    readings = [{'participant': name, 'slot': slot, 'slot_start': config.slot_start_text(slot), 'net_wh': wh}
                for name, slot, wh in _measured(net, config, forecast_error, seed)]
    orders_path, readings_path = write_all(out_dir, {'orders.csv': csv_text(ORDER_COLUMNS, orders),
                                                     'readings.csv': csv_text(READING_COLUMNS, readings)})
    covered = [slot for slots in net.values() for slot in slots]
    buys = sum(1 for o in orders if o['side'] == 'buy')
    return ImportSummary(orders_path, readings_path, len(net), min(covered), max(covered), buys, len(orders) - buys,
                         len(readings), tuple(capped), rule)
