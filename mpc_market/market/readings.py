"""Meter readings: ``participant,slot,net_wh`` (signed Wh: + imported, - exported); ``slot_start``
(ISO 8601 with offset or Z) may name the slot instead of or beside ``slot``, as in orders."""

from __future__ import annotations

from ..common.errors import InputError
from ..common.textinput import parse_int, read_text
from .config import MarketConfig
from .orders import row_slot, slot_records

READING_COLUMNS = ('participant', 'slot', 'net_wh')


def load_readings(path: str, config: MarketConfig) -> dict[tuple[str, int], tuple[int, int]]:
    """{(participant, slot): (net_wh, line)}; |net_wh| <= max_reading_wh, one reading per pair."""
    text = read_text(path)
    if not text.strip():
        raise InputError(path, 1, 'file', 'empty file')
    readings: dict[tuple[str, int], tuple[int, int]] = {}
    for line, record in slot_records(path, text, READING_COLUMNS):
        participant, slot = row_slot(path, line, record, config)
        net = parse_int(path, line, 'net_wh', record['net_wh'])
        if abs(net) > config.max_reading_wh:
            raise InputError(path, line, 'net_wh', f'|{net}| exceeds max_reading_wh {config.max_reading_wh}')
        if (participant, slot) in readings:
            raise InputError(path, line, 'participant', f'second reading of {participant} for slot {slot} '
                             f'(first on line {readings[(participant, slot)][1]})')
        readings[(participant, slot)] = (net, line)
    if not readings:
        raise InputError(path, 2, 'file', 'no readings')
    return readings
