"""import profiles (issue 24): gsy-e's INTERVAL;POWER(W) profiles and long CSVs integrated exactly onto the
market's slots, the largest-remainder rounding, DST days of 92 and 100 quarter hours, and every malformed
input refused in one line naming file, line and field."""

import datetime
import math
import os
import tempfile
import zoneinfo
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_market.common.errors import InputError
from mpc_market.market.config import parse_config
from mpc_market.market.importer import (
    BiddingRule,
    bidding_rule,
    import_profiles,
    net_positions,
    read_series,
    round_exact,
    slot_energy,
)

from helpers import read_rows, run_examples

BASE = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
BERLIN = BASE + 'start = 2026-06-17T00:00:00+02:00\ntimezone = "Europe/Berlin"\n'


def market(text=BERLIN, **keys):
    return parse_config('m.toml', text + ''.join(f'{k} = {v}\n' for k, v in keys.items()))


def nets(tmp_path, name, text, config=None, **options):
    """{participant: {slot: Wh}} of one file's series."""
    config = config or market()
    path = tmp_path / name
    path.write_text(text)
    return net_positions(read_series(str(path), config, **options), config)[0]


def test_gsy_profiles_in_every_documented_form_give_the_same_slots(tmp_path):
    hhmm = 'INTERVAL;POWER(W):\n00:00;1000\n00:15;-2000\n00:30;333.3\n00:45;10\n'   # the header of gsy-e's docs
    expected = {'h1': {0: 250, 1: -500, 2: 83, 3: 3}}   # 83.325 + 2.5: the total -164.175 rounds to -164
    assert nets(tmp_path, 'h1.csv', hhmm) == expected
    assert nets(tmp_path, 'h1.csv', hhmm.replace(';', ',').replace('POWER(W):', 'POWER(W)')) == expected
    assert nets(tmp_path, 'h1.csv', hhmm.split('\n', 1)[1]) == expected                # no header
    naive_utc = ''.join(f'2026-06-16T22:{m:02d},{w}\n' for m, w in ((0, 1000), (15, -2000), (30, 333.3), (45, 10)))
    assert nets(tmp_path, 'h1.csv', 'INTERVAL,POWER(W)\n' + naive_utc) == expected      # gsy-e: naive is UTC
    seconds = naive_utc.replace('T', ' ').replace(',', ':00,')
    assert nets(tmp_path, 'h1.csv', seconds) == expected                                  # YYYY-MM-DD hh:mm:ss
    offset = ''.join(f'2026-06-17T00:{m:02d}+02:00;{w}\n' for m, w in ((0, 1000), (15, -2000), (30, 333.3), (45, 10)))
    assert nets(tmp_path, 'h1.csv', offset) == expected
    assert nets(tmp_path, 'h1.csv', hhmm, participant='home-7') == {'home-7': expected['h1']}
    assert nets(tmp_path, 'h1.csv', hhmm.replace('-2000', '0'), pv=True) == {'h1': {0: -250, 1: 0, 2: -83, 3: -3}}


def test_long_csvs_of_power_and_energy(tmp_path):
    power = ('participant,datetime,power_w\n'
             'b,2026-06-16T22:00:00Z,400\na,2026-06-17T00:00:00+02:00,-1200\nb,2026-06-16T22:15:00Z,800\n')
    # each value holds until the participant's next one; the last as long as the step before (a: alone, one slot)
    assert nets(tmp_path, 'p.csv', power) == {'a': {0: -300}, 'b': {0: 100, 1: 200}}
    energy = 'participant,datetime,energy_wh\na,2026-06-16T23:00:00Z,1001\n'
    hourly = market(slot_minutes=60)
    assert nets(tmp_path, 'e.csv', energy, hourly) == {'a': {1: 1001}}
    assert nets(tmp_path, 'e.csv', energy) == {'a': {4: 1001}}         # one 15-minute slot: it is alone
    two = energy + 'a,2026-06-17T00:00:00Z,-20\n'                      # an hour each, spread over 4 slots
    assert nets(tmp_path, 'e.csv', two) == {'a': {4: 251, 5: 250, 6: 250, 7: 250, 8: -5, 9: -5, 10: -5, 11: -5}}


def test_five_minute_power_and_hourly_energy_integrate_exactly(tmp_path):
    config = market()
    rows = ''.join(f'2026-06-16T22:{5 * i:02d}:00Z;{w}\n' for i, w in enumerate([100, 200, 300, 7, 7, 8]))
    (tmp_path / 'h.csv').write_text(rows)
    (series,) = read_series(str(tmp_path / 'h.csv'), config)
    energy, lines = slot_energy(series, config)
    assert energy == {0: Fraction(50), 1: Fraction(22 * 5, 60)} and lines == {0: 1, 1: 4}
    assert net_positions([series], config)[0] == {'h': {0: 50, 1: 2}}   # 1.8333 rounds to 2 (total 51.83 -> 52)


def test_the_rounding_rule():
    assert round_exact({0: Fraction(7), 1: Fraction(-3)}) == {0: 7, 1: -3}             # whole Wh pass through
    assert round_exact({3: Fraction(1, 2), 1: Fraction(1, 2)}) == {1: 1, 3: 0}           # a tie: the earlier slot
    assert round_exact({0: Fraction(-1, 2), 1: Fraction(-1, 2)}) == {0: 0, 1: -1}        # total -1 kept
    assert round_exact({0: Fraction(-1, 4), 1: Fraction(-1, 4)}) == {0: 0, 1: 0}         # total -1/2: halves up, 0
    assert sum(round_exact({s: Fraction(1, 3) for s in range(9)}).values()) == 3


@settings(max_examples=run_examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.decimals(-5000, 5000, places=3)), min_size=1, max_size=30))
def test_integration_keeps_every_slot_within_1_wh_and_the_total(steps):
    """Random steps of power, each a whole number of 5-minute slots: the exact energy by hand, and the
    rounding rule's promise (every slot within 1 Wh, the total rounded halves up)."""
    config = market(slot_minutes=5)
    at, text = 0, ''
    for minutes, watts in steps:
        text += f'{(config.start + datetime.timedelta(minutes=5 * at)).isoformat()};{watts}\n'
        at += minutes
    # each value holds until the next; the last as long as the step before it (one slot when alone)
    held = [m for m, _ in steps[:-1]] + [steps[-2][0] if len(steps) > 1 else 1]
    exact_total = sum((Fraction(w) * m * 5 / 60 for m, (_, w) in zip(held, steps, strict=True)), Fraction(0))
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, 'h.csv')
        with open(path, 'w') as f:
            f.write(text)
        (series,) = read_series(path, config)
    energy, _ = slot_energy(series, config)
    rounded = net_positions([series], config)[0]['h']
    assert sum(energy.values()) == exact_total and len(energy) == sum(held)
    assert all(abs(rounded[s] - energy[s]) < 1 for s in energy)
    assert sum(rounded.values()) == math.floor(exact_total + Fraction(1, 2))


@pytest.mark.parametrize('day, quarter_hours', [(datetime.date(2026, 3, 29), 92), (datetime.date(2026, 10, 25), 100)])
def test_a_berlin_dst_day_of_local_quarter_hours_fills_its_slots(tmp_path, day, quarter_hours):
    config = market(BASE, start='2026-03-01T00:00:00+01:00', timezone='"Europe/Berlin"')
    berlin = zoneinfo.ZoneInfo('Europe/Berlin')  # each local time with its own offset, as meters export them
    first = datetime.datetime.combine(day, datetime.time(), berlin).astimezone(datetime.UTC)
    rows = []
    for q in range(quarter_hours):
        local = (first + datetime.timedelta(minutes=15 * q)).astimezone(berlin)
        rows.append(f'h1,{local.isoformat()},{q + 1}')
    assert len({r.split(',')[1][11:16] for r in rows}) == (92 if quarter_hours == 92 else 96)  # 02:xx twice in autumn
    got = nets(tmp_path, 'dst.csv', 'participant,datetime,energy_wh\n' + '\n'.join(rows) + '\n', config)['h1']
    assert sorted(got) == list(config.day_slots(day)) and len(got) == quarter_hours
    assert [got[s] for s in sorted(got)] == list(range(1, quarter_hours + 1))


def test_bidding_rule_defaults_and_options():
    assert bidding_rule(market()) == BiddingRule(Decimal('0.116'), Decimal('0.070'))
    flat = market(BASE.replace('0.139', '0.047'))
    assert bidding_rule(flat) == BiddingRule(Decimal('0.047'), Decimal('0.047'))      # no band, no spread
    negative = parse_config('m.toml', '[market]\nprice_floor = -0.50\nprice_ceiling = 0.30\ntick = 0.01\n')
    assert bidding_rule(negative) == BiddingRule(Decimal('0.10'), Decimal('-0.30'))
    assert bidding_rule(market(), '0.25', '-0.01') == BiddingRule(Decimal('0.25'), Decimal('-0.01'))
    for option, text in (('buy-limit', 'cheap'), ('sell-limit', '-11'), ('buy-limit', '1e999999')):
        with pytest.raises(InputError) as caught:
            bidding_rule(market(), **{option.replace('-', '_'): text})
        assert str(caught.value).startswith(f'--{option}: must be a decimal')


def test_orders_and_readings_follow_the_net_with_caps_zones_and_errors(tmp_path):
    config = market(max_order_wh=300)
    path = tmp_path / 'p.csv'
    path.write_text('participant,datetime,energy_wh\na,2026-06-16T22:00:00Z,500\na,2026-06-16T22:15:00Z,0\n'
                    'a,2026-06-16T22:30:00Z,-20\n')
    done = import_profiles(read_series(str(path), config), config, str(tmp_path / 'out'), bidding_rule(config))
    assert done.capped == (('a', 0, 500),) and (done.buys, done.sells, done.readings) == (1, 1, 3)
    assert read_rows(tmp_path / 'out' / 'orders.csv') == [
        {'participant': 'a', 'slot': '0', 'slot_start': '2026-06-16T22:00:00Z', 'side': 'buy', 'energy_wh': '300',
         'limit_price': '0.116'},
        {'participant': 'a', 'slot': '2', 'slot_start': '2026-06-16T22:30:00Z', 'side': 'sell', 'energy_wh': '20',
         'limit_price': '0.070'}]
    assert [r['net_wh'] for r in read_rows(tmp_path / 'out' / 'readings.csv')] == ['500', '0', '-20']  # uncapped
    assert (tmp_path / 'out' / 'orders.csv').stat().st_mode & 0o777 == 0o600
    noisy = import_profiles(read_series(str(path), config), config, str(tmp_path / 'noisy'), bidding_rule(config),
                            forecast_error=0.2, seed=3)
    again = import_profiles(read_series(str(path), config), config, str(tmp_path / 'again'), bidding_rule(config),
                            forecast_error=0.2, seed=3)
    readings = read_rows(tmp_path / 'noisy' / 'readings.csv')
    assert readings == read_rows(tmp_path / 'again' / 'readings.csv') and noisy.readings == again.readings == 3
    assert readings[0]['net_wh'] != '500' and readings[1]['net_wh'] == '0'   # 0 x (1 + e) stays 0
    small = market(max_order_wh=400, max_reading_wh=400)
    with pytest.raises(InputError) as caught:
        import_profiles(read_series(str(path), small), small, str(tmp_path / 'x'), bidding_rule(small))
    assert str(caught.value) == (f'{path}:2: energy_wh: a nets 500 Wh in slot 0 (2026-06-16T22:00:00Z), beyond the '
                                 "market's max_reading_wh 400")
    zoned = market(BERLIN + 'zones = true\n[zones]\nZ1 = ["b"]\n')
    with pytest.raises(InputError, match=r'p.csv:2: participant: a is in no zone'):
        import_profiles(read_series(str(path), zoned), zoned, str(tmp_path / 'y'), bidding_rule(zoned))
    path.write_text('participant,datetime,energy_wh\na,2026-06-16T22:00:00Z,0\n')
    with pytest.raises(InputError, match='every slot nets 0 Wh'):
        import_profiles(read_series(str(path), config), config, str(tmp_path / 'z'), bidding_rule(config))
    assert not any((tmp_path / d).exists() for d in 'xyz')   # nothing half-written


GSY = 'INTERVAL;POWER(W)\n00:00;100\n'
LONG = 'participant,datetime,power_w\n'


@pytest.mark.parametrize('name, text, line, field, words', [
    ('h.csv', '', 1, 'file', 'empty file'),
    ('h.csv', 'INTERVAL;POWER(W)\n', 1, 'file', 'no values'),
    ('h.csv', 'TIME;ENERGY(kWh)\n00:00;1\n', 1, 'header', 'expected INTERVAL;POWER(W)'),
    ('h.csv', GSY + '00:15;100;3\n', 3, 'row', '3 fields'),
    ('h.csv', GSY + '00:15;1,5\n', 3, 'POWER(W)', 'a decimal point, not a comma'),
    ('h.csv', GSY + '00:15;nan\n', 3, 'POWER(W)', "'nan' is not a number"),
    ('h.csv', GSY + '00:15;2e12\n', 3, 'POWER(W)', 'beyond'),
    ('h.csv', GSY + '24:00;1\n', 3, 'INTERVAL', 'is not hh:mm or a date and time'),
    ('h.csv', GSY + '2026-06-16T22:15;1\n', 3, 'INTERVAL', 'one kind of INTERVAL per file'),
    ('h.csv', GSY + '00:00;5\n', 3, 'INTERVAL', 'again (first on line 2)'),
    ('h.csv', '2026-02-30T00:00;1\n', 1, 'INTERVAL', 'not a real date and time'),
    ('h.csv', '1969-12-31T23:45;1\n', 1, 'INTERVAL', 'before 1970'),
    ('h.csv', '2026-06-16T21:45Z;1\n', 1, 'INTERVAL', "before the market's start 2026-06-16T22:00:00Z"),
    ('h.csv', '00:07;1\n', 1, 'INTERVAL', 'begins at 2026-06-16T22:07:00Z, not on the market'),
    ('h.csv', GSY + '00:20;100\n', 3, 'INTERVAL', 'ends at 2026-06-16T22:40:00Z'),
    ('h.csv', GSY + '2:00;1\n', 3, 'INTERVAL', 'is not hh:mm or a date and time'),
    ('my house.csv', GSY, 0, 'participant', 'rename the file or give --participant'),
    ('p.csv', 'participant,datetime\na,2026-06-16T22:00Z\n', 1, 'header', 'one column power_w'),
    ('p.csv', 'participant,datetime,power_w,energy_wh\n', 1, 'header', 'one column power_w'),
    ('p.csv', 'participant;datetime;power_w\n', 1, 'header', 'one column power_w'),
    ('p.csv', LONG, 2, 'file', 'no values'),
    ('p.csv', LONG + 'a b,2026-06-16T22:00:00Z,1\n', 2, 'participant', 'is not'),
    ('p.csv', LONG + 'a,2026-06-16T22:00:00,1\n', 2, 'datetime', 'needs a UTC offset or Z'),
    ('p.csv', LONG + 'a,17.06.2026 00:00,1\n', 2, 'datetime', 'not a date and time'),
    ('p.csv', LONG + 'a,2026-06-16T22:00:00Z\n', 2, 'row', '2 fields, header has 3'),
    ('p.csv', LONG + 'a,2026-06-16T22:00:00Z,x\n', 2, 'power_w', "'x' is not a number"),
    ('p.csv', LONG + 'a,2026-06-16T22:00:00Z,1\na,2026-06-17T00:00:00+02:00,2\n', 3, 'datetime', 'again'),
    ('p.csv', LONG + 'a,2026-06-16T22:00:00Z,1\na,2027-06-16T22:15:00Z,2\n', 3, 'datetime', 'more than 366 days'),
])
def test_every_malformed_input_is_one_line_naming_file_line_and_field(tmp_path, name, text, line, field, words):
    path = tmp_path / name
    path.write_bytes(text.encode())
    config = market()
    with pytest.raises(InputError) as caught:
        net_positions(read_series(str(path), config), config)
    message = str(caught.value)
    where = f'{path}: {field}: ' if line == 0 else f'{path}:{line}: {field}: '
    assert message.startswith(where) and words in message and '\n' not in message, message


def test_a_missing_or_binary_file_and_options_a_long_csv_cannot_take(tmp_path):
    config = market()
    with pytest.raises(InputError, match=r'nothing.csv: No such file'):
        read_series(str(tmp_path / 'nothing.csv'), config)
    (tmp_path / 'bin.csv').write_bytes(b'\xff\xfe\x00')
    with pytest.raises(InputError, match='not UTF-8'):
        read_series(str(tmp_path / 'bin.csv'), config)
    (tmp_path / 'p.csv').write_text(LONG + 'a,2026-06-16T22:00:00Z,1\n')
    with pytest.raises(InputError, match=r'^--participant: .*is a long CSV'):
        read_series(str(tmp_path / 'p.csv'), config, participant='x')
    with pytest.raises(InputError, match=r'^--pv: '):
        read_series(str(tmp_path / 'p.csv'), config, pv=True)
    (tmp_path / 'h.csv').write_text(GSY)
    no_start = market(BASE)
    with pytest.raises(InputError, match=r"h.csv:2: INTERVAL: hh:mm counts from the market's start"):
        read_series(str(tmp_path / 'h.csv'), no_start)
    (tmp_path / 'h.csv').write_text('2026-06-16T22:00Z;1\n')
    with pytest.raises(InputError, match=r'h.csv:1: INTERVAL: the market file gives no start'):
        net_positions(read_series(str(tmp_path / 'h.csv'), no_start), no_start)
