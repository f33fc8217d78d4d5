"""Orders: one per participant and slot, read from CSV or JSON and validated against the market.

A row names its slot by ``slot`` (the index), by ``slot_start`` (the slot's start, ISO 8601 with an
offset or Z, mapped by the market's ``start`` and ``slot_minutes``), or by both, which must agree.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_header, csv_records, parse_int, parse_participant_slot, read_text
from .config import MAX_ZONES, SIGNED_PRICE_RULE, MarketConfig, bounded_signed_price

ORDER_COLUMNS = ('participant', 'slot', 'side', 'energy_wh', 'limit_price')
SLOT_FIELDS = ('slot', 'slot_start')  # a row needs one of them (or both, agreeing)





@dataclass(frozen=True)
class Order:
    participant: str
    slot: int
    side: str  # 'buy' or 'sell'
    energy_wh: int
    limit_price: Decimal
    line: int = 0
    zone: str | None = None  # the participant's community (optional column; zoned markets only)



def slot_start_slot(path: str, line: int, value: object, config: MarketConfig) -> int:
    """The slot starting at a slot_start field: an ISO 8601 date and time with offset or Z on the slot grid.

    Args:
        path: the file (for the error).
        line: the row's line.
        value: the field as read.
        config: the market (its start and slot_minutes).

    Returns:
        The slot index (config.slot_of).

    Raises:
        InputError: not a date and time with an offset, the market has no start, or the time is
            before the start or between two slot starts.
    """
    shown = str(value)[:40]
    at = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            at = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            at = None
    if at is None:
        raise InputError(path, line, 'slot_start', f'{shown!r} is not an ISO 8601 date and time '
                                                   '(such as 2026-06-17T10:15:00Z)')
    if at.tzinfo is None or at.utcoffset() is None:
        raise InputError(path, line, 'slot_start', f'{shown!r} needs a UTC offset or Z')
    if config.start is None:
        raise InputError(path, line, 'slot_start', 'the market file gives no start, so slots have no times: give slot')
    slot = config.slot_of(at)
    if slot is None:
        where = 'before the market start' if at < config.start else f'not on the {config.slot_minutes}-minute slot grid'
        raise InputError(path, line, 'slot_start', f'{shown} is {where} (slot 0 starts {config.slot_start_text(0)})')
    return slot


def row_slot(path: str, line: int, row: Mapping[str, object], config: MarketConfig) -> tuple[str, int]:
    """The (participant, slot) key of an order or reading row that gives slot, slot_start or both.

    Args:
        path: the file (for the error).
        line: the row's line.
        row: the row's fields.
        config: the market (maps slot_start).

    Returns:
        (participant, slot).

    Raises:
        InputError: a bad participant, slot or slot_start, neither given, or the two disagreeing.
    """
    given = {field: row.get(field) for field in SLOT_FIELDS if row.get(field) not in (None, '')}
    if not given:
        raise InputError(path, line, 'slot', 'missing: give slot or slot_start')
    slot = slot_start_slot(path, line, given['slot_start'], config) if 'slot_start' in given else None
    participant, indexed = parse_participant_slot(path, line, {'participant': row.get('participant'),
                                                               'slot': given.get('slot', slot)})
    if slot is not None and indexed != slot:
        raise InputError(path, line, 'slot_start',
                         f'{str(given["slot_start"])[:40]} is slot {slot}, not slot {indexed}')
    return participant, indexed


def slot_records(path: str, text: str, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """csv_records of a file whose rows name their slot by slot or slot_start (columns include 'slot').

    Raises:
        InputError: a missing column (neither slot nor slot_start) or a malformed row.
    """
    header = csv_header(path, text)
    others = tuple(c for c in columns if c != 'slot')
    if not any(field in header for field in SLOT_FIELDS) and all(c in header for c in others):
        raise InputError(path, 1, 'slot', 'missing column (slot or slot_start)')
    return csv_records(path, text, others)


def _parse_order(path: str, line: int, row: Mapping[str, object], config: MarketConfig) -> Order:
    participant, slot = row_slot(path, line, row, config)
    side = row['side']
    if side not in ('buy', 'sell'):
        raise InputError(path, line, 'side', f"must be 'buy' or 'sell', got {side!r}")
    energy = parse_int(path, line, 'energy_wh', row['energy_wh'])
    if not 1 <= energy <= config.max_order_wh:
        raise InputError(path, line, 'energy_wh', f'must be in 1..{config.max_order_wh}, got {energy}')
    raw_price = row['limit_price']
    try:
        if isinstance(raw_price, (bool, float)) or len(str(raw_price)) > 40:
            raise InvalidOperation
        price = Decimal(str(raw_price).strip())
    except InvalidOperation:
        raise InputError(path, line, 'limit_price', f'{str(raw_price)[:40]!r} is not a decimal number') from None
    # a limit may be negative (a seller paying to be rid of energy) whatever the floor: a buy below the
    # floor or a sell above the ceiling still settles with the retailer (MarketConfig.buy_level / sell_level)
    if bounded_signed_price(price) is None:
        raise InputError(path, line, 'limit_price', f'must be {SIGNED_PRICE_RULE}, got {str(raw_price)[:40]!r}')
    zone = row.get('zone') or None
    if zone is not None and not is_name(zone):
        raise InputError(path, line, 'zone', f'{str(zone)[:80]!r} is not {NAME_RULE}')
    return Order(participant, slot, side, energy, price, line, zone)



def _json_rows(path: str, text: str) -> Iterator[tuple[int, dict]]:
    decoder = json.JSONDecoder(parse_float=Decimal)
    pos = len(text) - len(text.lstrip())
    if not text.startswith('[', pos):
        raise InputError(path, text.count('\n', 0, pos) + 1, 'json', 'expected a list of order objects')
    pos += 1
    while True:
        while pos < len(text) and text[pos] in ' \t\r\n,':
            pos += 1
        line = text.count('\n', 0, pos) + 1
        if pos >= len(text):
            raise InputError(path, line, 'json', 'unterminated list')
        if text[pos] == ']':
            return
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(path, exc.lineno, 'json', exc.msg) from None
        except (ValueError, RecursionError):
            raise InputError(path, line, 'json', 'nested too deeply or a number too long') from None
        if not isinstance(obj, dict):
            raise InputError(path, line, 'json', 'expected an order object')
        for column in ORDER_COLUMNS:
            if column not in obj and not (column == 'slot' and 'slot_start' in obj):
                raise InputError(path, line, column, 'missing field')
        if isinstance(obj['limit_price'], Decimal):
            obj['limit_price'] = str(obj['limit_price'])
        yield line, obj
        pos = end



def load_orders(path: str, config: MarketConfig) -> list[Order]:
    """Parse and validate an orders CSV (or JSON list); at most one order per (participant, slot)."""
    text = read_text(path)
    if not text.strip():
        raise InputError(path, 1, 'file', 'empty file')
    is_json = str(path).lower().endswith('.json') or text.lstrip().startswith('[')
    rows = _json_rows(path, text) if is_json else slot_records(path, text, ORDER_COLUMNS)
    orders = []
    seen: dict[tuple[str, int], int] = {}  # (participant, slot) -> first line
    for line, row in rows:
        order = _parse_order(path, line, row, config)
        key = (order.participant, order.slot)
        if key in seen:
            raise InputError(path, line, 'participant',
                             f'second order of {order.participant} for slot {order.slot} (first on line {seen[key]})')
        seen[key] = line
        orders.append(order)
    if not orders:
        raise InputError(path, 2, 'file', 'no orders')
    return orders


def resolve_zones(path: str, config: MarketConfig, orders: list[Order]) -> dict[str, str]:
    """{participant: zone} of a zoned market: the orders' zone column, else the config's [zones].

    A participant must have exactly one zone; a conflict or a missing zone names the order's line.
    """
    if not config.zoned:
        return {}
    zone_of: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for o in orders:
        zone = o.zone or config.zone_of.get(o.participant)
        if zone is None:
            raise InputError(path, o.line, 'zone',
                             f'{o.participant} has no zone (zone column or [zones] in the market)')
        if config.zone_of.get(o.participant, zone) != zone:
            raise InputError(path, o.line, 'zone', f'{o.participant} is in zone {config.zone_of[o.participant]} '
                                                   f'in the market file, not {zone}')
        if zone_of.setdefault(o.participant, zone) != zone:
            raise InputError(path, o.line, 'zone', f'{o.participant} was in zone {zone_of[o.participant]} '
                                                   f'on line {first_line[o.participant]}')
        first_line.setdefault(o.participant, o.line)
    zones = set(zone_of.values()) | set(config.zone_names)
    if len(zones) > MAX_ZONES:
        raise InputError(path, max(first_line.values()), 'zone', f'{len(zones)} zones; at most {MAX_ZONES}')
    return zone_of
