"""Orders: one per participant and slot, read from CSV or JSON and validated against the market.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_records, parse_int, parse_participant_slot, read_text
from .config import MAX_ZONES, SIGNED_PRICE_RULE, MarketConfig, bounded_signed_price

ORDER_COLUMNS = ('participant', 'slot', 'side', 'energy_wh', 'limit_price')






@dataclass(frozen=True)
class Order:
    participant: str
    slot: int
    side: str  # 'buy' or 'sell'
    energy_wh: int
    limit_price: Decimal
    line: int = 0
    zone: str | None = None  # the participant's community (optional column; zoned markets only)



def _parse_order(path: str, line: int, row: Mapping[str, object], config: MarketConfig) -> Order:
    participant, slot = parse_participant_slot(path, line, row)
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
            if column not in obj:
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
    rows = _json_rows(path, text) if is_json else csv_records(path, text, ORDER_COLUMNS)
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
