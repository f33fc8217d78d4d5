"""Time-stamped slots (issue 24): every per-slot output carries slot_start (ISO 8601 UTC) beside the
slot, and inputs may name a slot by its start instead of its index."""

import csv
import datetime
import json

import pytest

from mpc_market.cli.market import slot_clock
from mpc_market.cli.rounds import round_slots
from mpc_market.cli.stats import day_starts
from mpc_market.common.errors import BadParameter, InputError
from mpc_market.market.config import parse_config
from mpc_market.stats.release import GroupTotals, totals_rows
from tests.helpers import cli

# local midnight of 2026-03-29 in Berlin (CET, +01:00): the spring DST day has 92 quarter hours
MARKET = ('[market]\nprice_floor = 0.05\nprice_ceiling = 0.30\ntick = 0.01\nmax_order_wh = 1000\n'
          'start = 2026-03-29T00:00:00+01:00\ntimezone = "Europe/Berlin"\n')
BARE = '[market]\nprice_floor = 0.05\nprice_ceiling = 0.30\ntick = 0.01\nmax_order_wh = 1000\n'
BY_SLOT = ('participant,slot,side,energy_wh,limit_price\n'
           's1,0,sell,300,0.06\nb1,0,buy,200,0.25\nb2,41,buy,100,0.20\ns2,41,sell,100,0.10\n')
# the same orders by their starts, with offsets of both clocks (slot 41: 11:15 CEST = 09:15 UTC)
BY_START = ('participant,slot_start,side,energy_wh,limit_price\n'
            's1,2026-03-29T00:00:00+01:00,sell,300,0.06\nb1,2026-03-28T23:00:00Z,buy,200,0.25\n'
            'b2,2026-03-29T11:15:00+02:00,buy,100,0.20\ns2,2026-03-29T09:15:00Z,sell,100,0.10\n')
READINGS = 'participant,slot_start,net_wh\ns1,2026-03-28T23:00:00Z,-300\nb1,2026-03-28T23:00:00Z,150\n' \
           'b2,2026-03-29T09:15:00Z,100\ns2,2026-03-29T09:15:00Z,-90\n'
FILES = ('public.csv', 'participants.csv', 'bills.csv', 'retailer.csv')


def rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def settle(tmp_path, name, orders, market=MARKET, readings=READINGS, engine='plain', orders_name='orders.csv'):
    folder = tmp_path / name
    folder.mkdir()
    (folder / 'market.toml').write_text(market)
    (folder / orders_name).write_text(orders)
    (folder / 'readings.csv').write_text(readings)
    return cli('settle', '--engine', engine, '--orders', folder / orders_name, '--readings', folder / 'readings.csv',
               '--config', folder / 'market.toml', '--out', folder / 'out', '--quiet'), folder / 'out'


def test_every_per_slot_output_carries_its_utc_start(tmp_path):
    proc, out = settle(tmp_path, 'a', BY_SLOT, readings=READINGS.replace('slot_start', 'slot').replace(
        '2026-03-28T23:00:00Z', '0').replace('2026-03-29T09:15:00Z', '41'))
    assert proc.returncode == 0, proc.stderr
    public = rows(out / 'public.csv')
    assert list(public[0]) == ['slot', 'slot_start', 'price', 'traded_wh', 'residual_wh']
    assert [(r['slot'], r['slot_start']) for r in public] == [('0', '2026-03-28T23:00:00Z'),
                                                              ('41', '2026-03-29T09:15:00Z')]
    for name in ('participants.csv', 'retailer.csv'):
        table = rows(out / name)
        assert list(table[0])[list(table[0]).index('slot') + 1] == 'slot_start', name
        assert {(r['slot'], r['slot_start']) for r in table} == {('0', '2026-03-28T23:00:00Z'),
                                                                 ('41', '2026-03-29T09:15:00Z')}, name
    market = json.loads((out / 'summary.json').read_text())['provenance']['market']
    assert (market['start'], market['slot_minutes'], market['timezone']) == ('2026-03-28T23:00:00Z', 15,
                                                                             'Europe/Berlin')


def test_without_a_start_slot_start_is_empty(tmp_path):
    proc, out = settle(tmp_path, 'bare', BY_SLOT, market=BARE, readings='participant,slot,net_wh\ns1,0,-300\n')
    assert proc.returncode == 0, proc.stderr
    assert {r['slot_start'] for name in FILES[:2] + FILES[3:] for r in rows(out / name)} == {''}


def test_orders_and_readings_by_slot_start_round_trip(tmp_path):
    """By index, by start, by both (agreeing) and as JSON: the same result files, byte for byte."""
    by_index = READINGS.replace('slot_start', 'slot').replace('2026-03-28T23:00:00Z', '0').replace(
        '2026-03-29T09:15:00Z', '41')
    both = ('participant,slot,slot_start,side,energy_wh,limit_price\n' + ''.join(
        f'{a.split(",", 1)[0]},{a.split(",")[1]},{b.split(",")[1]},{a.split(",", 2)[2]}\n'
        for a, b in zip(BY_SLOT.splitlines()[1:], BY_START.splitlines()[1:], strict=True)))
    as_json = json.dumps([dict(zip(('participant', 'slot_start', 'side', 'energy_wh', 'limit_price'),
                                   line.split(','), strict=True)) for line in BY_START.splitlines()[1:]])
    outs = []
    for name, orders, readings, file_name in (('index', BY_SLOT, by_index, 'orders.csv'),
                                              ('start', BY_START, READINGS, 'orders.csv'),
                                              ('both', both, READINGS, 'orders.csv'),
                                              ('json', as_json, READINGS, 'orders.json')):
        proc, out = settle(tmp_path, name, orders, readings=readings, orders_name=file_name)
        assert proc.returncode == 0, (name, proc.stderr)
        outs.append({f: (out / f).read_bytes() for f in FILES})
    assert all(o == outs[0] for o in outs[1:])


@pytest.mark.parametrize('value, market, message', [
    ('2026-03-29T00:07:00+01:00', MARKET, 'not on the 15-minute slot grid (slot 0 starts 2026-03-28T23:00:00Z)'),
    ('2026-03-28T22:45:00Z', MARKET, 'before the market start'),
    ('2026-03-29T00:00:00', MARKET, 'needs a UTC offset or Z'),
    ('29.03.2026 00:00', MARKET, 'is not an ISO 8601 date and time'),
    ('2026-03-29T00:00:00Z', BARE, 'the market file gives no start'),
])
def test_a_bad_slot_start_is_one_line_naming_file_line_and_field(tmp_path, value, market, message):
    orders = f'participant,slot_start,side,energy_wh,limit_price\ns1,2026-03-29T00:00:00+01:00,sell,5,0.1\n' \
             f'b1,{value},buy,5,0.2\n'
    if market is BARE:
        orders = orders.replace('s1,2026-03-29T00:00:00+01:00', 's1,2026-03-28T23:00:00Z')
    proc, _ = settle(tmp_path, 'bad', orders, market=market, readings='participant,slot,net_wh\ns1,0,-5\n')
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    line = 2 if market is BARE else 3  # without a start the first slot_start is already refused
    assert len(lines) == 1 and lines[0].startswith('error: ') and f'orders.csv:{line}: slot_start: ' in lines[0], lines
    assert message in lines[0], lines


def test_slot_and_slot_start_must_agree_and_one_is_needed(tmp_path):
    proc, _ = settle(tmp_path, 'disagree', 'participant,slot,slot_start,side,energy_wh,limit_price\n'
                     's1,1,2026-03-28T23:00:00Z,sell,5,0.1\n')
    assert proc.returncode == 2 and 'orders.csv:2: slot_start: 2026-03-28T23:00:00Z is slot 0, not slot 1' \
        in proc.stderr, proc.stderr
    proc, _ = settle(tmp_path, 'neither', 'participant,side,energy_wh,limit_price\ns1,sell,5,0.1\n')
    assert proc.returncode == 2 and 'orders.csv:1: slot: missing column (slot or slot_start)' in proc.stderr
    proc, _ = settle(tmp_path, 'empty', 'participant,slot,slot_start,side,energy_wh,limit_price\ns1,,,sell,5,0.1\n')
    assert proc.returncode == 2 and 'orders.csv:2: slot: missing: give slot or slot_start' in proc.stderr
    proc, _ = settle(tmp_path, 'reading', BY_SLOT, readings='participant,slot_start,net_wh\n'
                     's1,2026-03-28T23:10:00Z,-300\n')
    assert proc.returncode == 2 and 'readings.csv:2: slot_start: ' in proc.stderr, proc.stderr


@pytest.mark.slow
def test_mpc_and_plain_outputs_are_byte_identical_with_slot_start(tmp_path):
    results = []
    for engine in ('plain', 'mpc'):
        proc, out = settle(tmp_path, engine, BY_START, engine=engine)
        assert proc.returncode == 0, proc.stderr
        results.append({f: (out / f).read_bytes() for f in FILES})
    assert results[0] == results[1]
    assert b'2026-03-29T09:15:00Z' in results[1]['public.csv']


def test_day_slots_of_dst_days_give_round_slots_and_demo_clock():
    spring = parse_config('m', MARKET)
    assert round_slots(spring, None, '2026-03-29') == list(range(92))
    autumn = parse_config('m', MARKET.replace('2026-03-29T00:00:00+01:00', '2026-10-25T00:00:00+02:00'))
    assert round_slots(autumn, None, '2026-10-25') == list(range(100))
    assert round_slots(autumn, [10, 11], '2026-10-25') == [10, 11]
    with pytest.raises(InputError, match=r'slot 100 is not delivered on 2026-10-25: .* slots 0-99 \(100 slots'):
        round_slots(autumn, [99, 100], '2026-10-25')
    with pytest.raises(InputError, match='day: .*does not begin on a slot boundary at or after the market start'):
        round_slots(autumn, None, '2026-10-24')
    utc = parse_config('m', BARE + 'start = 2026-03-29T00:00:00Z\n')
    assert round_slots(utc, None, '2026-03-29') == list(range(96))  # UTC days: 96 every day
    assert round_slots(parse_config('m', BARE), [3], '2026-03-29') == [3]  # no start: the slots as given
    with pytest.raises(InputError, match='--slots is needed'):
        round_slots(parse_config('m', BARE), None, '2026-03-29')
    # demo's hh:mm: local time of the market's timezone (slot 8 = 02:00 CET is 03:00 CEST after the change)
    assert [slot_clock(spring, s) for s in (0, 7, 8, 41)] == ['00:00', '01:45', '03:00', '11:15']
    assert slot_clock(parse_config('m', BARE), 41) == '10:15'


def test_statistics_time_stamp_a_day_of_the_keys_slot_count_and_refuse_a_dst_day():
    market = parse_config('m', MARKET)
    starts = day_starts(market, '2026-03-30', 96)
    assert starts[0] == '2026-03-29T22:00:00Z' and len(starts) == 96
    with pytest.raises(BadParameter, match="2026-03-29 has 92 slots .* the operator keys 96: statistics take"):
        day_starts(market, '2026-03-29', 96)
    assert len(day_starts(market, '2026-03-29', 92)) == 92
    group = GroupTotals('F1', None, 5, [1, 2], [0, 1])
    assert totals_rows('feeder', [group], starts[:2])[1] == {
        'feeder': 'F1', 'slot': 1, 'slot_start': '2026-03-29T22:15:00Z', 'meters': 5, 'import_wh': 2,
        'export_wh': 1, 'net_wh': 1}
    assert totals_rows('feeder', [group])[0]['slot_start'] == ''
    assert datetime.datetime.fromisoformat(starts[4]) - datetime.datetime.fromisoformat(starts[0]) == \
        datetime.timedelta(hours=1)
