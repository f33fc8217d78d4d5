"""Deployments and the calendar map days to slots as the market file does (issue 24): with a start,
a delivery day is a local calendar day of the market's timezone (MarketConfig.day_slots), so the
DST days have 92 and 100 quarter hours in Europe/Berlin and 96 in UTC."""

import os
import tomllib

import pytest

from mpc_market.common.errors import InputError
from mpc_market.net.calendar import load_calendar, planned
from mpc_market.net.messages import spec_problem
from mpc_market.net.store import now_ms
from mpc_market.rpc import market_pb2
from tests.helpers import cli, read_rows

BASE = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\n'
BERLIN = BASE + 'start = 2026-03-29T00:00:00+01:00\ntimezone = "Europe/Berlin"\n'  # the spring DST day's midnight
UTC = BASE + 'start = 2026-03-29T00:00:00Z\n'
DAILY = ('[calendar]\nmarket = "market.toml"\nstart = {start}\nperiod_s = 86400\nslots = {slots}\n'
         'open_before_s = 129600\ngate_closure_before_s = 43200\n')


def calendar(tmp_path, market, start='2026-03-29T00:00:00+01:00', slots=96, text=DAILY):
    (tmp_path / 'market.toml').write_text(market)
    body = text.format(start=start, slots=slots)
    return load_calendar('broker.toml', body, tomllib.loads(body)['calendar'],
                         lambda path, name: os.path.join(tmp_path, name))


def test_a_daily_calendar_delivers_the_market_s_local_days(tmp_path):
    cal = calendar(tmp_path, BERLIN)
    spring, normal = planned(cal, 0), planned(cal, 1)
    assert (spring.day, spring.slots) == ('2026-03-29', list(range(0, 92)))
    assert (normal.day, normal.slots) == ('2026-03-30', list(range(92, 188)))
    assert spring.round_id == 'cal-20260328T230000' and normal.round_id == 'cal-20260329T220000'
    assert normal.gate_closure_ms - spring.gate_closure_ms == 23 * 3600 * 1000  # the day of 23 hours
    autumn_n = 210  # 2026-10-25 is 210 days after 2026-03-29
    autumn = planned(cal, autumn_n)
    assert autumn.day == '2026-10-25' and len(autumn.slots) == 100
    assert planned(cal, autumn_n + 1).slots[0] == autumn.slots[-1] + 1
    utc = calendar(tmp_path, UTC, start='2026-03-29T00:00:00Z')
    assert [len(planned(utc, n).slots) for n in (0, 210)] == [96, 96]  # UTC days
    bare = calendar(tmp_path, BASE)  # no start: n * slots as before
    assert planned(bare, 2).slots == list(range(192, 288))


@pytest.mark.parametrize('start, slots, key, message', [
    ('2026-03-29T00:00:00+01:00', 92, 'slots', 'a period of 86400 s has 96 slots of 15 minutes, not 92'),
    ('2026-03-29T01:00:00+01:00', 96, 'start', 'start at a local midnight in Europe/Berlin, not 01:00'),
    ('2026-03-28T00:00:00+01:00', 96, 'start', 'must be a slot start of the market'),
    ('2026-03-29T00:05:00+01:00', 96, 'start', 'must be a slot start of the market'),
])
def test_a_calendar_that_disagrees_with_the_market_s_time_is_refused(tmp_path, start, slots, key, message):
    with pytest.raises(InputError, match=message) as caught:
        calendar(tmp_path, BERLIN, start=start, slots=slots)
    assert caught.value.field == key


def test_a_node_refuses_slots_outside_the_round_s_day():
    def spec(slots, day):
        return market_pb2.RoundSpec(round_id='r1', slots=slots, gate_closure_unix_ms=now_ms() + 60_000,
                                    market_toml=BERLIN, day=day)
    assert spec_problem(spec(range(92), '2026-03-29'), 3) == ''
    assert 'slots outside 2026-03-29' in spec_problem(spec(range(93), '2026-03-29'), 3)
    assert 'that day is slots 92-187' in spec_problem(spec([0], '2026-03-30'), 3)
    assert 'does not begin on a slot boundary' in spec_problem(spec([0], '2026-03-28'), 3)
    assert spec_problem(spec([5000], ''), 3) == ''  # no day: the slots are the operator's


def orders_csv(path, slots):
    """Two buyers and two sellers in each slot (the shared deployment's participants p00..p03)."""
    lines = ['participant,slot,side,energy_wh,limit_price']
    for s in slots:
        lines += [f'p00,{s},sell,300,0.11', f'p01,{s},sell,200,0.15', f'p02,{s},buy,250,0.18',
                  f'p03,{s},buy,100,0.12']
    path.write_text('\n'.join(lines) + '\n')


@pytest.mark.slow
def test_dst_days_deploy_as_92_and_100_slots(tmp_path, shared_deployment):
    deployment = shared_deployment.running(['dst-spring', 'dst-autumn', 'dst-bad'])
    client = ('--broker', deployment.broker_address, '--keys', deployment.keys)
    market = tmp_path / 'market.toml'
    market.write_text(BERLIN)
    spring = cli('round', 'open', *client, '--round', 'dst-spring', '--day', '2026-03-29', '--market', market,
                 '--gate-closure-in', 120, check=True)
    assert '92 slots' in spring.stdout, spring.stdout
    autumn = cli('round', 'open', *client, '--round', 'dst-autumn', '--day', '2026-10-25', '--market', market,
                 '--gate-closure-in', 120, check=True)
    assert '100 slots' in autumn.stdout, autumn.stdout
    listed = cli('round', 'list', *client, check=True).stdout
    assert any(line.startswith('dst-autumn') and '2026-10-25' in line for line in listed.splitlines()), listed
    bad = cli('round', 'open', *client, '--round', 'dst-bad', '--day', '2026-03-29', '--slots', '90-93',
              '--market', market, '--gate-closure-in', 120)
    assert bad.returncode == 2 and 'slot 92 is not delivered on 2026-03-29' in bad.stderr, bad.stderr
    assert 'dst-bad' not in cli('round', 'list', *client, check=True).stdout
    # orders in the spring day's first and last slots clear with their UTC starts, as the local clear does
    orders = tmp_path / 'orders.csv'
    orders_csv(orders, (0, 91))
    cli('submit', *client, '--round', 'dst-spring', '--orders', orders, check=True)
    closed = cli('round', 'close', *client, '--round', 'dst-spring', '--wait', 120)
    assert closed.returncode == 0, closed.stdout + closed.stderr
    # the shared deployment's other tests submit to "the open round": leave none open
    empty = cli('round', 'close', *client, '--round', 'dst-autumn', '--wait', 120)
    assert empty.returncode in (0, 1) and 'dst-autumn' in empty.stdout + empty.stderr, empty.stdout + empty.stderr
    cli('results', *client, '--public', '--round', 'dst-spring', '--out', tmp_path / 'got', check=True)
    cli('clear', '--engine', 'plain', '--orders', orders, '--config', market, '--out', tmp_path / 'plain', '--quiet',
        check=True)
    got, plain = read_rows(tmp_path / 'got' / 'public.csv'), read_rows(tmp_path / 'plain' / 'public.csv')
    assert [r['slot_start'] for r in got] == [f'2026-03-{28 + (23 + s // 4) // 24}T{(23 + s // 4) % 24:02d}:'
                                              f'{s % 4 * 15:02d}:00Z' for s in range(92)]  # every slot of the day
    assert [r for r in got if r['slot'] in ('0', '91')] == plain
    assert [(r['slot'], r['slot_start']) for r in plain] == [('0', '2026-03-28T23:00:00Z'),
                                                             ('91', '2026-03-29T21:45:00Z')]
