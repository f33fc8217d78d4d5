"""The market's public parameters (MARKET.toml) and their exact price arithmetic.

Prices are decimals in currency per kWh. Internally every price is an integer number of
*price units* (10**-decimals currency per kWh, the finest unit among floor, ceiling and tick),
and every energy an integer number of Wh, so amounts (Wh x price units) are exact integers of
10**-(decimals + 3) currency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from math import ceil, floor

from ..common.errors import BadParameter, InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import parse_toml, read_text, refuse_unknown_keys, toml_key_line, toml_table_line

MAX_ORDER_WH_LIMIT = (1 << 24) - 1  # keeps the rationing's masked values below 2^127 (see mpc.clearing)



MARKET_KEYS = ('price_floor', 'price_ceiling', 'tick', 'max_order_wh', 'max_reading_wh', 'mechanism', 'zones',
               'network_fee')



MECHANISMS = ('double-auction', 'sdr', 'mmr', 'bill-sharing')



MAX_ZONES = 256  # each zone adds a crossing and a division per slot under MPC



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
        units = Fraction(price) * self.price_scale
        if units.denominator != 1:  # every price reaching here is on the grid; a caller's bug otherwise
            raise BadParameter('price', f'price {price} is not on the price unit grid')
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
    config = MarketConfig(floor_, ceiling, tick, max_wh, max_reading, mechanism, zoned, fee if zoned else Decimal(0))
    if config.levels > 4096:
        raise InputError(path, toml_key_line(text, 'tick'), 'tick',
                         f'{config.levels} price levels; at most 4096 supported')
    return config
