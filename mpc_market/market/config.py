"""The market's public parameters (MARKET.toml) and their exact price arithmetic.

Prices are decimals in ``currency`` (ISO 4217) per kWh, negative ones included (a feed-in tariff
below zero). Internally every price is an integer number of *price units* (10**-decimals currency
per kWh, the finest unit among floor, ceiling and tick), and every energy an integer number of Wh,
so amounts (Wh x price units) are exact integers of 10**-(decimals + 3) currency.

Time: slot s starts at ``start + s * slot_minutes`` (an instant; UTC inside, so a DST change moves
no slot); ``timezone`` (IANA) only decides which slots make up a local calendar day (92, 96 or 100
quarter hours). Without ``start`` the slots are bare indices and outputs leave slot_start empty.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property, lru_cache
from math import ceil, floor

from ..common.errors import BadParameter, InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import parse_toml, read_text, refuse_unknown_keys, toml_key_line, toml_table_line

MAX_ORDER_WH_LIMIT = (1 << 24) - 1  # keeps the rationing's masked values below 2^127 (see mpc.clearing)



MARKET_KEYS = ('price_floor', 'price_ceiling', 'tick', 'max_order_wh', 'max_reading_wh', 'mechanism', 'zones',
               'network_fee', 'currency', 'start', 'slot_minutes', 'timezone', 'feeder_min_cohort', 'flex_pricing')

SLOT_MINUTES = (5, 15, 30, 60)   # slot lengths a market may have (15: the European quarter hour)
CURRENCY = re.compile(r'[A-Z]{3}')  # an ISO 4217 alphabetic code
DEFAULT_CURRENCY = 'EUR'
MIN_PRICE_FLOOR = Decimal(-10)   # currency per kWh: day-ahead floors are -0.5/kWh; keeps amounts far from 2^126
TIMEZONE = re.compile(r'[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*')
MAX_AMOUNT_UNITS = 1 << 62       # |price units x Wh| of one order or reading (int64 result arrays, with headroom)



MECHANISMS = ('double-auction', 'sdr', 'mmr', 'bill-sharing')



MAX_ZONES = 256  # each zone adds a crossing and a division per slot under MPC
MAX_FEEDER_COHORT = 10_000  # feeder_min_cohort: beyond any LV feeder
FLEX_PRICINGS = ('pay-as-clear', 'pay-as-bid')  # flex_pricing: an activation is paid its marginal or its own price


@lru_cache(maxsize=65536)   # a market's prices are few, its orders many: each exact once
def _scaled(price, scale):
    return Fraction(price) * scale


@lru_cache(maxsize=65536)
def _ticks(limit, floor_, tick):
    return (Fraction(limit) - floor_) / tick


@dataclass(frozen=True)
class MarketConfig:
    """Public market parameters; levels k = 0..K-1 have price floor + k*tick."""

    price_floor: Decimal
    price_ceiling: Decimal
    tick: Decimal
    max_order_wh: int = 65535
    max_reading_wh: int = 65535  # |net_wh| of a meter reading per slot
    mechanism: str = 'double-auction'
    zoned: bool = False                      # communities clear first, then one cross-community auction
    network_fee: Decimal = Decimal(0)        # currency/kWh on energy crossing communities, a multiple of tick
    zone_map: tuple = ()                     # ((participant, zone), ...) from [zones]; orders may add their own
    currency: str = DEFAULT_CURRENCY         # ISO 4217 code every price and amount is in
    start: datetime.datetime | None = None   # the start of slot 0 (aware, UTC), or None: bare slot indices
    slot_minutes: int = 15
    timezone: str = 'UTC'                    # IANA zone of the market's calendar days
    feeder_min_cohort: int = 0               # > 0: clearing releases each zone's planned net position per slot
                                             # (the DSO's congestion check) where >= this many participants count
    flex_pricing: str = 'pay-as-clear'       # the flexibility market's pricing (one of FLEX_PRICINGS)

    def slot_start(self, slot: int) -> datetime.datetime | None:
        """The UTC start of a slot, or None without a start."""
        return None if self.start is None else self.start + datetime.timedelta(minutes=self.slot_minutes * slot)

    def slot_start_text(self, slot: int) -> str:
        """ISO 8601 UTC start of a slot ('2026-06-17T10:15:00Z'), '' without a start."""
        at = self.slot_start(slot)
        return '' if at is None else at.strftime('%Y-%m-%dT%H:%M:%SZ')

    def slot_of(self, at: datetime.datetime) -> int | None:
        """The slot starting exactly at an aware instant, or None (no start, before it, or off the grid)."""
        if self.start is None or at.tzinfo is None:
            return None
        slot, rest = divmod(int((at - self.start).total_seconds()), 60 * self.slot_minutes)
        return slot if rest == 0 and slot >= 0 else None

    def day_slots(self, day: datetime.date) -> range:
        """The slots of a local calendar day in the market's timezone (92 or 100 quarter hours on a DST
        change, 96 otherwise).

        Raises:
            BadParameter: the market has no start, or the day begins before it or off the slot grid.
        """
        if self.start is None:
            raise BadParameter('start', 'the market file gives no start: its slots have no calendar days')
        zone = zoneinfo.ZoneInfo(self.timezone)
        first, after = (datetime.datetime.combine(d, datetime.time(), zone).astimezone(datetime.UTC)
                        for d in (day, day + datetime.timedelta(days=1)))
        lo, hi = self.slot_of(first), self.slot_of(after)
        if lo is None or hi is None:
            raise BadParameter('start', f'{day} does not begin on a slot boundary at or after the market start')
        return range(lo, hi)

    @cached_property
    def decimals(self):
        """Number of decimals of the price unit."""
        return max(-min(d.as_tuple().exponent, 0)
                   for d in (self.price_floor, self.price_ceiling, self.tick, self.network_fee))

    @cached_property
    def fee_levels(self):
        """The network fee in ticks: a buy order's limit drops this many levels in the cross auction."""
        return int(self.network_fee / self.tick)

    @cached_property
    def fee_units(self):
        return self.price_units(self.network_fee)

    @cached_property
    def zone_of(self):
        return dict(self.zone_map)

    @cached_property
    def zone_names(self):
        """The zones of the market file's map, sorted."""
        return sorted(set(self.zone_of.values()))

    @cached_property
    def price_scale(self):
        return 10 ** self.decimals

    @cached_property
    def levels(self):
        """K, the number of price levels."""
        return int((self.price_ceiling - self.price_floor) / self.tick) + 1

    def price_units(self, price):
        """Exact integer price units of a price on the unit grid."""
        units = _scaled(price, self.price_scale)
        if units.denominator != 1:  # every price reaching here is on the grid; a caller's bug otherwise
            raise BadParameter('price', f'price {price} is not on the price unit grid')
        return int(units)

    @cached_property
    def floor_units(self):
        return self.price_units(self.price_floor)

    @cached_property
    def ceiling_units(self):
        return self.price_units(self.price_ceiling)

    @cached_property
    def tick_units(self):
        return self.price_units(self.tick)

    def level_price_units(self, k):
        return self.floor_units + k * self.tick_units

    def level_price(self, k):
        return self.price_floor + k * self.tick

    @cached_property
    def energy_bits(self):
        return self.max_order_wh.bit_length()

    @cached_property
    def _grid(self):
        return Fraction(self.price_floor), Fraction(self.tick)

    def _ticks_above_floor(self, limit):
        return _ticks(limit, *self._grid)

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
SIGNED_PRICE_RULE = (f'a decimal from {MIN_PRICE_FLOOR} to below 10^{MAX_PRICE_DIGITS}, with at most '
                     f'{MAX_PRICE_DECIMALS} decimals')


def bounded_signed_price(value: Decimal) -> Decimal | None:
    """value if it is a bounded_price or a negative one down to MIN_PRICE_FLOOR; else None."""
    if value.is_finite() and value.is_signed() and not value.is_zero():
        return value if bounded_price(-value) is not None and value >= MIN_PRICE_FLOOR else None
    return bounded_price(value)


def _toml_decimal(path, text, key, value, signed=False):
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise InputError(path, toml_key_line(text, key), key, f'expected a decimal number, got {str(value)[:40]!r}')
    check, rule = (bounded_signed_price, SIGNED_PRICE_RULE) if signed else (bounded_price, PRICE_RULE)
    if isinstance(value, int) and value.bit_length() > 64 or check(Decimal(value)) is None:
        raise InputError(path, toml_key_line(text, key), key, f'must be {rule}, got {str(value)[:40]}')
    return Decimal(value)


def _toml_start(path, text, value):
    """The aware UTC start of slot 0 from a TOML offset datetime or an ISO 8601 string with offset or Z."""
    line = toml_key_line(text, 'start')
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise InputError(path, line, 'start', f'{value!r} is not an ISO 8601 date and time') from None
    if not isinstance(value, datetime.datetime):
        raise InputError(path, line, 'start', f'expected a date and time such as 2026-06-17T00:00:00Z, '
                                              f'got {str(value)[:40]!r}')
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(path, line, 'start', 'needs a UTC offset or Z (a local time is ambiguous on a DST change)')
    if value.second or value.microsecond or value < datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC):
        raise InputError(path, line, 'start', 'must fall on a whole minute, from 1970 on')
    return value.astimezone(datetime.UTC)


def _time_keys(path, text, market):
    """(currency, start, slot_minutes, timezone) of a [market] table."""
    currency = market.get('currency', DEFAULT_CURRENCY)
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise InputError(path, toml_key_line(text, 'currency'), 'currency',
                         f'must be an ISO 4217 code of three capital letters such as EUR, got {str(currency)[:40]!r}')
    start = _toml_start(path, text, market['start']) if 'start' in market else None
    minutes = market.get('slot_minutes', 15)
    if isinstance(minutes, bool) or minutes not in SLOT_MINUTES:
        raise InputError(path, toml_key_line(text, 'slot_minutes'), 'slot_minutes',
                         f'must be one of {", ".join(map(str, SLOT_MINUTES))}, got {str(minutes)[:40]!r}')
    if start is not None and (start.minute * 60 + start.hour * 3600) % (60 * minutes):
        raise InputError(path, toml_key_line(text, 'start'), 'start',
                         f'{start:%H:%M} UTC is not on the {minutes}-minute grid of the slots')
    zone = market.get('timezone', 'UTC')
    try:
        if not isinstance(zone, str) or len(zone) > 64 or not TIMEZONE.fullmatch(zone):
            raise zoneinfo.ZoneInfoNotFoundError(zone)
        zoneinfo.ZoneInfo(zone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise InputError(path, toml_key_line(text, 'timezone'), 'timezone',
                         f'must be an IANA time zone such as Europe/Berlin, got {str(zone)[:40]!r}') from None
    return currency, start, minutes, zone



def load_config(path: str) -> MarketConfig:
    """Read the ``[market]`` table of a market TOML file."""
    return parse_config(path, read_text(path, 'utf-8'))



def parse_config(path: str, text: str) -> MarketConfig:
    """The market configuration of TOML text (path only names it in errors)."""
    doc = parse_toml(path, text, parse_float=Decimal)
    market = doc.get('market')
    if not isinstance(market, dict):
        raise InputError(path, 1, 'market', 'missing [market] table')
    config = config_from_table(path, text, market)
    if 'zones' in doc:
        if market.get('zones') is not True:
            raise InputError(path, toml_table_line(text, 'zones'), 'zones',
                             '[zones] given but [market] zones is not true')
        zone_map = zone_map_from_table(path, text, doc['zones'])
        config = replace(config, zone_map=zone_map if config.zoned else ())
    return config


def market_summary(path: str, text: str) -> tuple[str, int]:
    """(mechanism, number of zones) of a market text for round listings; ('?', 0) if it does not parse."""
    try:
        config = parse_config(path, text)
    except InputError:
        return '?', 0
    return config.mechanism, len(config.zone_names) if config.zoned else 0


def with_mechanism(path: str, text: str, mechanism: str) -> str:
    """The market TOML text with [market] mechanism set (replaced or added), checked by parsing it.

    A community scheme on a zoned market file prices whole slots and ignores the zones."""
    if mechanism not in MECHANISMS:
        raise InputError(path, 0, 'mechanism', f'{mechanism!r} is not one of {", ".join(MECHANISMS)}')
    lines, section, done = text.splitlines(), None, False
    for i, line in enumerate(lines):
        header = re.match(r'\s*\[\s*([A-Za-z0-9_.-]+)\s*\]', line)
        if header:
            if section == 'market' and not done:
                lines.insert(i, f'mechanism = "{mechanism}"')
                done = True
                break
            section = header.group(1)
        elif section == 'market' and re.match(r'\s*mechanism\s*=', line):
            lines[i], done = f'mechanism = "{mechanism}"', True
            break
    if not done:
        if section != 'market' and not any(re.match(r'\s*\[\s*market\s*\]', ln) for ln in lines):
            raise InputError(path, 1, 'market', 'missing [market] table')
        lines.append(f'mechanism = "{mechanism}"')
    result = '\n'.join(lines) + '\n'
    parse_config(path, result)
    return result


def zone_map_from_table(path, text, table):
    """((participant, zone), ...) of a [zones] table: zone = ["participant", ...]."""
    if not isinstance(table, dict):
        raise InputError(path, toml_table_line(text, 'zones'), 'zones', 'must be a table of zone = [participants]')
    zone_of = {}
    for zone, members in table.items():
        line = toml_key_line(text, zone)
        if not is_name(zone):
            raise InputError(path, line, 'zones', f'zone {zone[:80]!r} is not {NAME_RULE}')
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InputError(path, line, zone, 'must be a list of participant names')
        for member in members:
            if not is_name(member):
                raise InputError(path, line, zone, f'participant {member[:80]!r} is not {NAME_RULE}')
            if member in zone_of:
                raise InputError(path, line, zone, f'participant {member} is already in zone {zone_of[member]}')
            zone_of[member] = zone
    if len(table) > MAX_ZONES:
        raise InputError(path, toml_table_line(text, 'zones'), 'zones', f'{len(table)} zones; at most {MAX_ZONES}')
    return tuple(sorted(zone_of.items()))



def config_from_table(path, text, market, extra_keys=()):
    refuse_unknown_keys(path, text, market, MARKET_KEYS + tuple(extra_keys), 'market')
    for key in MARKET_KEYS[:3]:
        if key not in market:
            raise InputError(path, 1, key, 'missing in [market]')
    floor_ = _toml_decimal(path, text, 'price_floor', market['price_floor'], signed=True)
    ceiling = _toml_decimal(path, text, 'price_ceiling', market['price_ceiling'], signed=True)
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
    zoned = market.get('zones', False)
    if not isinstance(zoned, bool):
        raise InputError(path, toml_key_line(text, 'zones'), 'zones', f'must be true or false, got {str(zoned)[:40]}')
    zoned = zoned and mechanism == 'double-auction'  # the community schemes price whole slots: no zones
    fee = _toml_decimal(path, text, 'network_fee', market['network_fee']) if 'network_fee' in market else Decimal(0)
    if fee and market.get('zones') is not True:
        raise InputError(path, toml_key_line(text, 'network_fee'), 'network_fee', 'only applies with zones = true')
    if fee % tick != 0 or fee > ceiling - floor_:
        raise InputError(path, toml_key_line(text, 'network_fee'), 'network_fee',
                         f'must be a whole number of ticks {tick} and at most {ceiling - floor_}, got {fee}')
    if floor_ < 0 and mechanism != 'double-auction':
        raise InputError(path, toml_key_line(text, 'price_floor'), 'price_floor',
                         f'{mechanism} prices from the grid tariffs and needs price_floor >= 0 (negative prices: '
                         f'the double auction)')
    cohort = market.get('feeder_min_cohort', 0)
    if isinstance(cohort, bool) or not isinstance(cohort, int) or not 0 <= cohort <= MAX_FEEDER_COHORT:
        raise InputError(path, toml_key_line(text, 'feeder_min_cohort'), 'feeder_min_cohort',
                         f'must be an integer in 0..{MAX_FEEDER_COHORT}, got {str(cohort)[:40]}')
    if cohort and not zoned:
        raise InputError(path, toml_key_line(text, 'feeder_min_cohort'), 'feeder_min_cohort',
                         'releases per-zone positions: it needs zones = true (the double auction)')
    flex_pricing = market.get('flex_pricing', 'pay-as-clear')
    if flex_pricing not in FLEX_PRICINGS:
        raise InputError(path, toml_key_line(text, 'flex_pricing'), 'flex_pricing',
                         f'must be {" or ".join(repr(p) for p in FLEX_PRICINGS)}, got {str(flex_pricing)[:40]!r}')
    currency, start, minutes, zone = _time_keys(path, text, market)
    config = MarketConfig(floor_, ceiling, tick, max_wh, max_reading, mechanism, zoned, fee if zoned else Decimal(0),
                          currency=currency, start=start, slot_minutes=minutes, timezone=zone,
                          feeder_min_cohort=cohort, flex_pricing=flex_pricing)
    if config.levels > 4096:
        raise InputError(path, toml_key_line(text, 'tick'), 'tick',
                         f'{config.levels} price levels; at most 4096 supported')
    if max_wh > max_reading:  # a missing reading is settled as the bought energy: the meter range must hold it
        raise InputError(path, toml_key_line(text, 'max_reading_wh'), 'max_reading_wh',
                         f'must be at least max_order_wh {max_wh}, got {max_reading}')
    largest = max(abs(config.floor_units), abs(config.ceiling_units)) * (max_wh + max_reading)
    if largest >= MAX_AMOUNT_UNITS:  # a participant's per-slot amounts stay exact 64-bit integers everywhere
        raise InputError(path, toml_key_line(text, 'price_ceiling'), 'price_ceiling',
                         f'prices with {config.decimals} decimals times {max_wh + max_reading} Wh exceed the '
                         f'exact amount range (2^62 units): use fewer decimals or smaller quantities')
    return config
