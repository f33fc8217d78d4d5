"""The market file's time and money keys: start, slot_minutes and timezone map slots to instants
(UTC inside, local calendar days of 92/96/100 quarter hours), currency is an ISO 4217 code, and the
double auction's prices may be negative (issue 24)."""

import datetime

import pytest

from mpc_market.common.errors import BadParameter, InputError
from mpc_market.market.config import parse_config

BASE = '[market]\nprice_floor = 0\nprice_ceiling = 0.30\ntick = 0.01\n'


def market(**keys):
    return parse_config('m.toml', BASE + ''.join(f'{k} = {v}\n' for k, v in keys.items()))


def test_slots_are_instants_and_a_local_day_follows_dst():
    config = market(start='2026-03-29T00:00:00+01:00', timezone='"Europe/Berlin"')
    assert config.start == datetime.datetime(2026, 3, 28, 23, tzinfo=datetime.UTC)
    assert (config.slot_start_text(0), config.slot_start_text(8)) == ('2026-03-28T23:00:00Z', '2026-03-29T01:00:00Z')
    assert config.slot_of(datetime.datetime(2026, 3, 29, 3, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=2))))\
        == 9  # 01:15 UTC, 2 h 15 min after 23:00 UTC
    assert config.slot_of(datetime.datetime(2026, 3, 29, 1, 5, tzinfo=datetime.UTC)) is None  # off the grid
    assert config.slot_of(datetime.datetime(2026, 3, 28, 1, tzinfo=datetime.UTC)) is None    # before the start
    assert len(config.day_slots(datetime.date(2026, 3, 29))) == 92    # spring forward: 23 hours
    assert config.day_slots(datetime.date(2026, 3, 30)) == range(92, 188)
    autumn = market(start='"2026-10-24T22:00:00Z"', timezone='"Europe/Berlin"')
    assert len(autumn.day_slots(datetime.date(2026, 10, 25))) == 100  # fall back: 25 hours
    hourly = market(start='2026-10-24T22:00:00Z', timezone='"Europe/Berlin"', slot_minutes=60)
    assert len(hourly.day_slots(datetime.date(2026, 10, 25))) == 25
    utc = market(start='2026-03-29T00:00:00Z')
    assert len(utc.day_slots(datetime.date(2026, 3, 29))) == 96       # UTC days have no DST
    with pytest.raises(BadParameter, match='no start'):
        market().day_slots(datetime.date(2026, 3, 29))
    with pytest.raises(BadParameter, match='slot boundary'):
        utc.day_slots(datetime.date(2026, 3, 28))                       # before the market's start


def test_defaults_keep_bare_slots_and_name_the_currency():
    config = market()
    assert (config.currency, config.start, config.slot_minutes, config.timezone) == ('EUR', None, 15, 'UTC')
    assert config.slot_start_text(5) == ''
    assert market(currency='"CHF"').currency == 'CHF'


def test_negative_prices_in_the_double_auction():
    config = parse_config('m.toml', '[market]\nprice_floor = -0.50\nprice_ceiling = 0.30\ntick = 0.01\n')
    assert (config.floor_units, config.ceiling_units, config.levels) == (-50, 30, 81)
    assert config.level_price_units(50) == 0 and config.format_price(config.level_price_units(10)) == '-0.40'
    assert config.sell_level(config.price_floor) == 0 and config.buy_level(config.price_floor) == 0
    below = parse_config('m.toml', '[market]\nprice_floor = -0.50\nprice_ceiling = -0.10\ntick = 0.01\n')
    assert below.levels == 41 and below.ceiling_units == -10      # an all-negative band


@pytest.mark.parametrize('line, field, words', [
    ('price_floor = -20', 'price_floor', 'from -10'),
    ('price_floor = -0.0000000001', 'price_floor', 'at most 9 decimals'),
    ('tick = -0.01', 'tick', '>= 0'),
    ('currency = "eur"', 'currency', 'ISO 4217'),
    ('currency = "EURO"', 'currency', 'ISO 4217'),
    ('currency = 978', 'currency', 'ISO 4217'),
    ('start = 2026-03-29T00:00:00', 'start', 'UTC offset'),
    ('start = "tomorrow"', 'start', 'ISO 8601'),
    ('start = 2026-03-29', 'start', 'date and time'),
    ('start = "2026-03-29T00:07:00Z"', 'start', '15-minute grid'),
    ('start = "1969-12-31T23:00:00Z"', 'start', 'from 1970'),
    ('slot_minutes = 20', 'slot_minutes', 'one of 5, 15, 30, 60'),
    ('slot_minutes = true', 'slot_minutes', 'one of'),
    ('timezone = "Mars/Olympus"', 'timezone', 'IANA'),
    ('timezone = "../../../etc/passwd"', 'timezone', 'IANA'),
    ('timezone = "/etc/localtime"', 'timezone', 'IANA'),
])
def test_bad_time_and_money_keys_are_one_line_errors(line, field, words):
    key = line.split(' =')[0]
    text = ''.join(f'{x}\n' for x in BASE.splitlines() if not x.startswith(key)) + line + '\n'
    with pytest.raises(InputError) as caught:
        parse_config('m.toml', text)
    assert str(caught.value).startswith('m.toml:') and f': {field}: ' in str(caught.value)
    assert words in str(caught.value)


def test_community_schemes_refuse_a_negative_floor():
    with pytest.raises(InputError, match='price_floor: sdr prices from the grid tariffs'):
        parse_config('m.toml', '[market]\nprice_floor = -0.01\nprice_ceiling = 0.30\ntick = 0.01\nmechanism = "sdr"\n')


def test_the_meter_range_holds_an_order_and_amounts_stay_exact_integers():
    with pytest.raises(InputError, match='max_reading_wh: must be at least max_order_wh 50000, got 40000'):
        parse_config('m.toml', BASE + 'max_order_wh = 50000\nmax_reading_wh = 40000\n')
    with pytest.raises(InputError, match='price_ceiling: prices with 9 decimals times .* exact amount range'):
        parse_config('m.toml', '[market]\nprice_floor = 9999000.000000001\nprice_ceiling = 9999000.000000002\n'
                     'tick = 0.000000001\nmax_order_wh = 16777215\nmax_reading_wh = 16777215\n')
