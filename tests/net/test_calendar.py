"""The broker's round calendar: the schedule itself, its configuration errors, and a deployment
whose rounds open, close and clear by the clock across a broker kill and restart."""

import signal
import time
from datetime import UTC, datetime

import pytest

from mpc_market.net.calendar import MAX_OPEN_ROUNDS, Calendar, due, planned
from mpc_market.net.client import BrokerClient
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.rpc import market_pb2

from helpers import MARKET, cli, wait_for, write_orders

DAY_MS = 86_400_000


def test_a_daily_day_ahead_calendar():
    start = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    calendar = Calendar('market.toml', start, 86400, 96, 36 * 3600, 12 * 3600)
    first = planned(calendar, 0)
    assert first.round_id == 'cal-20261201T000000' and first.slots == list(range(96))
    assert first.opens_ms == start - 36 * 3600_000 and first.gate_closure_ms == start - 12 * 3600_000
    assert planned(calendar, 1).slots[0] == 96
    # on 30 Nov before noon the round for 1 Dec is open; at noon its gate closes and the one for 2 Dec opens
    assert [r.round_id for r in due(calendar, start - 13 * 3600_000)] == ['cal-20261201T000000']
    assert [r.round_id for r in due(calendar, start - 12 * 3600_000)] == ['cal-20261202T000000']
    assert [r.round_id for r in due(calendar, start + DAY_MS - 13 * 3600_000)] == ['cal-20261202T000000']
    assert due(calendar, start - 5 * DAY_MS) == []


GOOD = ('market = "m.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 60\nslots = 4\nopen_before_s = 5\n'
        'gate_closure_before_s = 1\n')
BROKER_HEAD = ('[broker]\nlisten = "127.0.0.1:1"\ndata_dir = "b"\nkeys = "k"\n'
               '[deployment]\nnodes = ["a:1", "b:2", "c:3"]\n')


@pytest.mark.parametrize('calendar, line, key', [
    ('market = "m.toml"\nstart = "yesterday"\nperiod_s = 60\nslots = 4\nopen_before_s = 50\n'
     'gate_closure_before_s = 5\n', 9, 'start'),
    ('market = "m.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 60\nslots = 4\nopen_before_s = 5\n'
     'gate_closure_before_s = 5\n', 13, 'gate_closure_before_s'),
    ('market = "m.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 0\nslots = 4\nopen_before_s = 5\n'
     'gate_closure_before_s = 1\n', 10, 'period_s'),
    ('market = "m.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 60\nslots = 4\nopen_before_s = 5\n'
     'gate_closure_before_s = 1\nmechanism = "barter"\n', 14, 'mechanism'),
    ('market = "m.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 60\nslots = 4\nopen_before_s = 5\n'
     'gate_closure_before_s = 1\nwhen = 1\n', 14, 'when'),
    ('market = "missing.toml"\nstart = 2026-12-01T00:00:00Z\nperiod_s = 60\nslots = 4\nopen_before_s = 5\n'
     'gate_closure_before_s = 1\n', None, 'file'),
    # the third review: every id of a 'café' calendar was refused by the nodes, so no round ever opened
    (GOOD + 'prefix = "café"\n', 14, 'prefix'),
    (GOOD + f'prefix = "{"p" * 49}"\n', 14, 'prefix'),  # its ids would be 65 characters
    (GOOD + 'prefix = "-cal"\n', 14, 'prefix'),
    (GOOD + 'prefix = 7\n', 14, 'prefix'),
    # period_s = 0.01 planned 4.3 M rounds and took 184 s per tick
    (GOOD.replace('period_s = 60', 'period_s = 0.01'), 10, 'period_s'),
    (GOOD.replace('period_s = 60', 'period_s = 9.99'), 10, 'period_s'),
    (GOOD.replace('period_s = 60', 'period_s = inf'), 10, 'period_s'),
    (GOOD.replace('period_s = 60', 'period_s = nan'), 10, 'period_s'),
    (GOOD.replace('period_s = 60', 'period_s = 1e300'), 10, 'period_s'),
    (GOOD.replace('open_before_s = 5', 'open_before_s = inf'), 12, 'open_before_s'),
    (GOOD.replace('open_before_s = 5', 'open_before_s = 6002'), 12, 'open_before_s'),  # 101 rounds open at once
    (GOOD.replace('gate_closure_before_s = 1', 'gate_closure_before_s = nan'), 13, 'gate_closure_before_s'),
    (GOOD.replace('slots = 4', 'slots = 10001'), 11, 'slots'),
    (GOOD + 'readings_deadline_after_s = inf\n', 14, 'readings_deadline_after_s'),
    (GOOD + 'readings_deadline_after_s = 60\nreadings_after_s = -1\n', 15, 'readings_after_s'),
    ('[broker]\npoll_s = inf\n', 2, 'poll_s'),
])
def test_bad_calendars_are_one_line_errors(tmp_path, calendar, line, key):
    (tmp_path / 'm.toml').write_text(MARKET)
    if calendar.startswith('[broker]'):  # a [broker] number: its own table first, then a good calendar
        text = calendar + BROKER_HEAD.split('\n', 1)[1] + '[calendar]\n' + GOOD
    else:
        text = BROKER_HEAD + '[calendar]\n' + calendar
    (tmp_path / 'broker.toml').write_text(text)
    proc = cli('broker', '--config', tmp_path / 'broker.toml')
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr
    if line is not None:
        assert f'broker.toml:{line}: {key}:' in proc.stderr, proc.stderr
    else:
        assert 'missing.toml' in proc.stderr


def test_the_longest_prefix_makes_ids_the_nodes_accept(tmp_path):
    from mpc_market.common.names import is_name
    from mpc_market.net.config import load_broker_config
    (tmp_path / 'm.toml').write_text(MARKET)
    (tmp_path / 'broker.toml').write_text(BROKER_HEAD + '[calendar]\n' + GOOD + f'prefix = "{"p" * 48}"\n')
    calendar = load_broker_config(str(tmp_path / 'broker.toml')).calendar
    late = planned(calendar, int(datetime(9999, 12, 31, tzinfo=UTC).timestamp() * 1000 - calendar.start_ms)
                   // 60_000)
    assert late.round_id.endswith('-99991231T000000') and len(late.round_id) == 64 and is_name(late.round_id)


def test_a_tick_plans_a_bounded_number_of_rounds():
    """A calendar built in code (not loaded) with a 10 ms period: one tick used to plan a round per
    period of the whole open window (here 360,000); it now plans at most MAX_OPEN_ROUNDS."""
    start = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)
    calendar = Calendar('market.toml', start, 0.01, 4, 3600, 0)
    started = time.monotonic()
    rounds_now = due(calendar, start - 1000)
    assert time.monotonic() - started < 0.5
    assert 0 < len(rounds_now) <= MAX_OPEN_ROUNDS
    # a loaded calendar never has more than MAX_OPEN_ROUNDS open at once, so none is dropped
    day = Calendar('market.toml', start, 60, 4, MAX_OPEN_ROUNDS * 60, 0)
    assert len(due(day, start + 30_000)) == MAX_OPEN_ROUNDS


def rounds(broker):
    return [(r.round_id, market_pb2.RoundState.State.Name(r.state).lower(), list(r.slots)) for r in broker.rounds()]


@pytest.mark.slow
@pytest.mark.deployment
def test_calendar_rounds_open_close_and_clear_across_a_broker_restart(tmp_path):
    participants = ['p0', 'p1', 'p2', 'p3']
    d = LocalDeployment(str(tmp_path / 'dep')).create(participants, node_options={'clearing_timeout_s': 120})
    (tmp_path / 'dep' / 'market.toml').write_text(MARKET)
    try:
        for i in range(3):
            d.start_node(i)
        d.wait_ready()
        # from the nodes' readiness: the first round is open at once and its gate closes 6-7 s later (time
        # for the broker to start and the orders); the next one opens 4 s after that (the least period)
        start = datetime.fromtimestamp(time.time() + 10, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
        with open(d.broker_config, 'a') as f:
            f.write(f'\n[calendar]\nmarket = "market.toml"\nstart = {start}\nperiod_s = 10\nslots = 2\n'
                    'open_before_s = 9\ngate_closure_before_s = 3\n')
        d.start_broker()
        d.wait_ready(names=['broker'])
        broker = BrokerClient(d.broker_address, d.keys, 'operator')
        first = wait_for(lambda: [r for r in rounds(broker) if r[1] == 'open'], 40, 'a calendar round to open')[0]
        round_id, _, slots = first
        orders = str(tmp_path / 'orders.csv')
        write_orders(orders, [('p0', slots[0], 'sell', 500, '0.11'), ('p1', slots[0], 'buy', 300, '0.19'),
                              ('p2', slots[1], 'buy', 200, '0.15'), ('p3', slots[1], 'sell', 100, '0.12')])
        cli('submit', '--broker', d.broker_address, '--keys', d.keys, '--round', round_id, '--orders', orders,
            check=True)
        assert broker.wait(round_id, 60).state == market_pb2.RoundState.CLEARED
        # the broker dies and comes back: the same rounds, none opened twice, the next one opens
        d.procs['broker'].send_signal(signal.SIGKILL)
        d.procs['broker'].wait()
        d.start_broker()
        d.wait_ready(names=['broker'])
        later = wait_for(lambda: [r for r in rounds(broker) if r[0] != round_id and r[1] == 'open'], 40,
                         'the next calendar round')
        listing = rounds(broker)
        assert len({r[0] for r in listing}) == len(listing)
        assert (round_id, 'cleared', slots) in listing and later[0][2] == [slots[1] + 1, slots[1] + 2]
        public = cli('results', '--broker', d.broker_address, '--keys', d.keys, '--public', '--round', round_id,
                     check=True)
        assert public.returncode == 0
        broker.close()
    finally:
        d.stop()
