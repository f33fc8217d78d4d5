"""Inputs of the statistics: a day of meter readings, the feeder map (participant -> feeder -> zone)
and the participant registry (the meters' signature keys).

Readings CSV, either ``participant,slot,import_wh,export_wh`` (a meter's two registers) or the
market's ``participant,slot,net_wh`` (+ imported, - exported). A slot a meter did not report
counts as 0 Wh both ways.
"""

import csv

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..common.errors import InputError, KeyFileError
from ..common.keys import load_registry
from ..common.names import NAME_RE, NAME_RULE
from ..common.textinput import csv_records, parse_int, parse_participant_slot, read_text
from .packing import Layout

FEEDER_COLUMNS = ('participant', 'feeder', 'zone')


def _header(path: str, text: str) -> list[str]:
    try:
        return [h.strip() for h in next(csv.reader(text.splitlines()))]
    except StopIteration:
        raise InputError(path, 1, 'file', 'empty file') from None


def _wh(path: str, line: int, field: str, value: str | int, layout: Layout) -> int:
    wh = parse_int(path, line, field, value)
    if not 0 <= wh <= layout.max_reading_wh:
        raise InputError(path, line, field, f'{wh} is outside 0..{layout.max_reading_wh} (the key\'s max_reading_wh)')
    return wh


def load_day_readings(path: str, layout: Layout) -> tuple[dict[str, list[int]], dict[str, int]]:
    """One day of meter readings, in either CSV format.

    Args:
        path: the readings CSV.
        layout: the operator keys' layout (slots, max_reading_wh).

    Returns:
        ({meter: [import_wh per slot] + [export_wh per slot]}, {meter: its first line}).

    Raises:
        InputError: a bad field, a slot outside the day, a second reading of a slot, or no readings.
    """
    text = read_text(path)
    registers = 'import_wh' in _header(path, text)
    columns = ('participant', 'slot', 'import_wh', 'export_wh') if registers else ('participant', 'slot', 'net_wh')
    days: dict[str, list[int]] = {}
    seen: dict[tuple[str, int], int] = {}
    first: dict[str, int] = {}
    for line, record in csv_records(path, text, columns):
        meter, slot = parse_participant_slot(path, line, record)
        if slot >= layout.slots:
            raise InputError(path, line, 'slot', f'{slot} is not a slot of the day (0..{layout.slots - 1})')
        if (meter, slot) in seen:
            raise InputError(path, line, 'slot', f'second reading of {meter} for slot {slot} '
                             f'(first on line {seen[meter, slot]})')
        seen[meter, slot] = line
        if registers:
            imported = _wh(path, line, 'import_wh', record['import_wh'], layout)
            exported = _wh(path, line, 'export_wh', record['export_wh'], layout)
        else:
            net = parse_int(path, line, 'net_wh', record['net_wh'])
            imported = _wh(path, line, 'net_wh', max(net, 0), layout)
            exported = _wh(path, line, 'net_wh', max(-net, 0), layout)
        first.setdefault(meter, line)
        values = days.setdefault(meter, [0] * layout.values)
        values[slot], values[layout.slots + slot] = imported, exported
    if not days:
        raise InputError(path, 2, 'file', 'no readings')
    return days, first


def _name(path: str, line: int, field: str, value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise InputError(path, line, field, f'{value[:80]!r} is not {NAME_RULE}')
    return value


def load_feeders(path: str) -> dict[str, tuple[str, str]]:
    """The feeder map: which feeder and zone each meter is on.

    Args:
        path: a CSV participant,feeder,zone.

    Returns:
        {participant: (feeder, zone)}.

    Raises:
        InputError: a bad name, a participant twice, a feeder in two zones, or no participants.
    """
    text = read_text(path)
    feeders: dict[str, tuple[str, str]] = {}
    zone_of: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line, record in csv_records(path, text, FEEDER_COLUMNS):
        meter = _name(path, line, 'participant', record['participant'])
        feeder = _name(path, line, 'feeder', record['feeder'])
        zone = _name(path, line, 'zone', record['zone'])
        if meter in feeders:
            raise InputError(path, line, 'participant', f'{meter} is listed twice (first on line {lines[meter]})')
        if zone_of.setdefault(feeder, zone) != zone:
            raise InputError(path, line, 'zone', f'feeder {feeder} is in zone {zone_of[feeder]}, not {zone}')
        feeders[meter], lines[meter] = (feeder, zone), line
    if not feeders:
        raise InputError(path, 2, 'file', 'no participants')
    return feeders


def load_participant_registry(path: str) -> dict[str, Ed25519PublicKey]:
    """The meters' signature keys.

    Args:
        path: the registry.json.

    Returns:
        {participant: Ed25519 public key}.

    Raises:
        InputError: the registry file is unreadable or malformed.
    """
    try:
        return load_registry(path)
    except KeyFileError as exc:
        raise InputError(path, 1, 'registry', str(exc)) from None
