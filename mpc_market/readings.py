"""Meter readings: ``participant,slot,net_wh`` (signed Wh: + imported, - exported)."""

import csv

from .errors import InputError
from .market import PARTICIPANT_RE, _parse_int

READING_COLUMNS = ('participant', 'slot', 'net_wh')


def load_readings(path, config):
    """{(participant, slot): (net_wh, line)}; |net_wh| <= max_reading_wh, one reading per pair."""
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8-sig')
    except OSError as exc:
        raise InputError(path, 0, 'file', exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise InputError(path, 1, 'file', 'not UTF-8 text') from None
    rows = csv.reader(text.splitlines())
    header = [h.strip() for h in next(rows, [])]
    if not header:
        raise InputError(path, 1, 'file', 'empty file')
    for column in READING_COLUMNS:
        if column not in header:
            raise InputError(path, 1, column, 'missing column')
    readings = {}
    for line, row in enumerate(rows, 2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise InputError(path, line, 'row', f'{len(row)} fields, header has {len(header)}')
        record = dict(zip(header, (c.strip() for c in row)))
        participant = record['participant']
        if not PARTICIPANT_RE.fullmatch(participant):
            raise InputError(path, line, 'participant', f'{participant!r} is not 1-64 characters of [A-Za-z0-9_.-]')
        slot = _parse_int(path, line, 'slot', record['slot'])
        if slot < 0:
            raise InputError(path, line, 'slot', f'must be >= 0, got {slot}')
        net = _parse_int(path, line, 'net_wh', record['net_wh'])
        if abs(net) > config.max_reading_wh:
            raise InputError(path, line, 'net_wh', f'|{net}| exceeds max_reading_wh {config.max_reading_wh}')
        if (participant, slot) in readings:
            raise InputError(path, line, 'participant', f'second reading of {participant} for slot {slot} '
                             f'(first on line {readings[(participant, slot)][1]})')
        readings[(participant, slot)] = (net, line)
    if not readings:
        raise InputError(path, 2, 'file', 'no readings')
    return readings
