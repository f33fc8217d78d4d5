"""Market configuration and orders: parsing, validation and exact price arithmetic.

Prices are decimals in currency per kWh. Internally every price is an integer number of
*price units* (10**-decimals currency per kWh, the finest unit among floor, ceiling and tick),
and every energy an integer number of Wh, so amounts (Wh x price units) are exact integers of
10**-(decimals + 3) currency.
"""

import csv
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from math import ceil, floor

from .errors import InputError
from .names import NAME_RE, NAME_RULE

ORDER_COLUMNS = ('participant', 'slot', 'side', 'energy_wh', 'limit_price')
PARTICIPANT_RE = NAME_RE  # see mpc_market.names
MAX_ORDER_WH_LIMIT = (1 << 24) - 1  # keeps the rationing's masked values below 2^127 (see mpc.protocol)
MARKET_KEYS = ('price_floor', 'price_ceiling', 'tick', 'max_order_wh', 'max_reading_wh', 'mechanism')
MECHANISMS = ('double-auction', 'sdr', 'mmr', 'bill-sharing')


@dataclass(frozen=True)
class MarketConfig:
    """Public market parameters; levels k = 0..K-1 have price floor + k*tick."""

    price_floor: Decimal
    price_ceiling: Decimal
    tick: Decimal
    max_order_wh: int = 65535
    max_reading_wh: int = 65535  # |net_wh| of a meter reading per slot
    mechanism: str = 'double-auction'

    @cached_property
    def decimals(self):
        """Number of decimals of the price unit."""
        return max(-min(d.as_tuple().exponent, 0) for d in (self.price_floor, self.price_ceiling, self.tick))

    @cached_property
    def price_scale(self):
        return 10 ** self.decimals

    @cached_property
    def levels(self):
        """K, the number of price levels."""
        return int((self.price_ceiling - self.price_floor) / self.tick) + 1

    def price_units(self, price):
        """Exact integer price units of a price on the unit grid."""
        units = Fraction(price) * self.price_scale
        assert units.denominator == 1, price
        return int(units)

    @cached_property
    def floor_units(self):
        return self.price_units(self.price_floor)

    @cached_property
    def ceiling_units(self):
        return self.price_units(self.price_ceiling)

    def level_price_units(self, k):
        return self.floor_units + k * self.price_units(self.tick)

    def level_price(self, k):
        return self.price_floor + k * self.tick

    @cached_property
    def energy_bits(self):
        return self.max_order_wh.bit_length()

    @cached_property
    def _grid(self):
        return Fraction(self.price_floor), Fraction(self.tick)

    def _ticks_above_floor(self, limit):
        floor_, tick = self._grid
        return (Fraction(limit) - floor_) / tick

    def sell_level(self, limit):
        """Level of a sell order, or None if it cannot trade locally (limit above the ceiling)."""
        if limit > self.price_ceiling:
            return None
        return max(0, ceil(self._ticks_above_floor(limit)))

    def buy_level(self, limit):
        """Level of a buy order, or None if it cannot trade locally (limit below the floor)."""
        if limit < self.price_floor:
            return None
        return min(self.levels - 1, floor(self._ticks_above_floor(limit)))

    def format_amount(self, amount_units):
        """Format an amount in 10**-(decimals+3) currency exactly, e.g. -0.123456."""
        return format_fixed(amount_units, self.decimals + 3)

    def format_price(self, price_units):
        return format_fixed(price_units, self.decimals)


def format_fixed(value, decimals):
    """Exact decimal string of the integer value * 10**-decimals."""
    sign = '-' if value < 0 else ''
    value = abs(value)
    if decimals == 0:
        return f'{sign}{value}'
    whole, frac = divmod(value, 10 ** decimals)
    return f'{sign}{whole}.{frac:0{decimals}d}'


@dataclass(frozen=True)
class Order:
    participant: str
    slot: int
    side: str  # 'buy' or 'sell'
    energy_wh: int
    limit_price: Decimal
    line: int = 0


def toml_key_line(text, key):
    """Line of `key = ...` in TOML text (1 when absent), for error messages."""
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf'\s*{re.escape(key)}\s*=', line):
            return number
    return 1


MAX_PRICE_DECIMALS = 9      # prices live on a grid of at most 1e-9 currency per kWh
MAX_PRICE_DIGITS = 7        # and below 10^7 currency per kWh


def bounded_price(value):
    """value (a Decimal) if it is finite, >= 0 and on the supported range and grid; else None.
    Checked before any arithmetic: 1e999999999 or 1e-999999999 would otherwise take forever."""
    if not value.is_finite() or (value.is_signed() and not value.is_zero()):
        return None
    _, digits, exponent = value.as_tuple()  # no Decimal arithmetic: it would overflow or crawl
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:  # trailing zeros
        significant -= 1
        exponent += 1
    if any(digits) and (exponent < -MAX_PRICE_DECIMALS or exponent + significant - 1 >= MAX_PRICE_DIGITS):
        return None
    return value


PRICE_RULE = f'a decimal >= 0, below 10^{MAX_PRICE_DIGITS}, with at most {MAX_PRICE_DECIMALS} decimals'


def _toml_decimal(path, text, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InputError(path, toml_key_line(text, key), key, f'expected a decimal number, got {str(value)[:40]!r}')
    if isinstance(value, int) and value.bit_length() > 64 or bounded_price(Decimal(value)) is None:
        raise InputError(path, toml_key_line(text, key), key, f'must be {PRICE_RULE}, got {str(value)[:40]}')
    return Decimal(value)


def read_text(path, encoding='utf-8-sig'):
    """A whole input file as text; unreadable or non-UTF-8 files are InputErrors."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode(encoding)
    except OSError as exc:
        raise InputError(path, 0, 'file', exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise InputError(path, 1, 'file', 'not UTF-8 text') from None


def load_config(path):
    """Read the ``[market]`` table of a market TOML file."""
    return parse_config(path, read_text(path, 'utf-8'))


def parse_toml(path, text, **options):
    """TOML text as a dict; a syntax error is an InputError at its line."""
    try:
        return tomllib.loads(text, **options)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r'line (\d+)', str(exc))
        raise InputError(path, int(m.group(1)) if m else 1, 'toml', str(exc).split(' (at')[0]) from None
    except (ValueError, RecursionError):  # an integer of thousands of digits, arrays nested too deeply
        raise InputError(path, 1, 'toml', 'nested too deeply or a number too long') from None


def parse_config(path, text):
    """The market configuration of TOML text (path only names it in errors)."""
    doc = parse_toml(path, text, parse_float=Decimal)
    market = doc.get('market')
    if not isinstance(market, dict):
        raise InputError(path, 1, 'market', 'missing [market] table')
    return config_from_table(path, text, market)


def config_from_table(path, text, market, extra_keys=()):
    for key in market:
        if key not in MARKET_KEYS and key not in extra_keys:
            raise InputError(path, toml_key_line(text, key), key, 'unknown key in [market]')
    for key in MARKET_KEYS[:3]:
        if key not in market:
            raise InputError(path, 1, key, 'missing in [market]')
    floor_ = _toml_decimal(path, text, 'price_floor', market['price_floor'])
    ceiling = _toml_decimal(path, text, 'price_ceiling', market['price_ceiling'])
    tick = _toml_decimal(path, text, 'tick', market['tick'])
    max_wh = market.get('max_order_wh', 65535)
    if isinstance(max_wh, bool) or not isinstance(max_wh, int) or not 1 <= max_wh <= MAX_ORDER_WH_LIMIT:
        raise InputError(path, toml_key_line(text, 'max_order_wh'), 'max_order_wh',
                         f'must be an integer in 1..{MAX_ORDER_WH_LIMIT}, got {max_wh!r}')
    max_reading = market.get('max_reading_wh', 65535)
    if isinstance(max_reading, bool) or not isinstance(max_reading, int) or not 1 <= max_reading <= MAX_ORDER_WH_LIMIT:
        raise InputError(path, toml_key_line(text, 'max_reading_wh'), 'max_reading_wh',
                         f'must be an integer in 1..{MAX_ORDER_WH_LIMIT}, got {max_reading!r}')
    mechanism = market.get('mechanism', 'double-auction')
    if mechanism not in MECHANISMS:
        raise InputError(path, toml_key_line(text, 'mechanism'), 'mechanism',
                         f'{mechanism!r} is not one of {", ".join(MECHANISMS)}')
    if tick <= 0:
        raise InputError(path, toml_key_line(text, 'tick'), 'tick', 'must be > 0')
    if ceiling < floor_:
        raise InputError(path, toml_key_line(text, 'price_ceiling'), 'price_ceiling',
                         f'{ceiling} is below price_floor {floor_}')
    if (ceiling - floor_) % tick != 0:
        raise InputError(path, toml_key_line(text, 'tick'), 'tick',
                         f'price_ceiling - price_floor = {ceiling - floor_} is not a whole number of ticks {tick}')
    config = MarketConfig(floor_, ceiling, tick, max_wh, max_reading, mechanism)
    if config.levels > 4096:
        raise InputError(path, toml_key_line(text, 'tick'), 'tick', f'{config.levels} price levels; at most 4096 supported')
    return config


def parse_participant_slot(path, line, row):
    """The (participant, slot) key of an order or reading row, validated."""
    participant = row['participant']
    if not isinstance(participant, str) or not PARTICIPANT_RE.fullmatch(participant):
        raise InputError(path, line, 'participant', f'{str(participant)[:80]!r} is not {NAME_RULE}')
    slot = parse_int(path, line, 'slot', row['slot'])
    if slot < 0:
        raise InputError(path, line, 'slot', f'must be >= 0, got {slot}')
    return participant, slot


def _parse_order(path, line, row, config):
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
    if bounded_price(price) is None:
        raise InputError(path, line, 'limit_price', f'must be {PRICE_RULE}, got {str(raw_price)[:40]!r}')
    return Order(participant, slot, side, energy, price, line)


def parse_int(path, line, field, value):
    if isinstance(value, bool):
        raise InputError(path, line, field, f'{value!r} is not an integer')
    if isinstance(value, int):
        if value.bit_length() > 63:
            raise InputError(path, line, field, 'integer out of range')
        return value
    if isinstance(value, str) and re.fullmatch(r'\s*[+-]?\d{1,18}\s*', value):
        return int(value)
    raise InputError(path, line, field, f'{str(value)[:40]!r} is not an integer (at most 18 digits)')


def csv_records(path, text, columns):
    """(line, {column: stripped value}) of a CSV with a header containing columns; blank lines skipped."""
    reader = csv.reader(text.splitlines())
    line = 1
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(path, 1, 'header', 'empty file') from None
        header = [h.strip() for h in header]
        for column in columns:
            if column not in header:
                raise InputError(path, 1, column, 'missing column')
        for line, row in enumerate(reader, 2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(path, line, 'row', f'{len(row)} fields, header has {len(header)}')
            yield line, dict(zip(header, (c.strip() for c in row)))
    except csv.Error as exc:
        raise InputError(path, reader.line_num or line, 'row', f'not CSV ({exc})') from None


def _json_rows(path, text):
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


def load_orders(path, config):
    """Parse and validate an orders CSV (or JSON list); at most one order per (participant, slot)."""
    text = read_text(path)
    if not text.strip():
        raise InputError(path, 1, 'file', 'empty file')
    is_json = str(path).lower().endswith('.json') or text.lstrip().startswith('[')
    rows = _json_rows(path, text) if is_json else csv_records(path, text, ORDER_COLUMNS)
    orders = []
    seen = {}
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
