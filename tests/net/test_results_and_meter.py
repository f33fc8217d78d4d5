"""Client commands at their seams, on one settled deployment round (issue 22):

- problem 4: `meter submit --aggregator` delivers to the statistics aggregator whatever the rounds;
  the market nodes get readings only while a round of the day takes them, and the output and
  exit status say per destination what happened;
- problem 1: `results --bill` without `--orders` is refused (one line, exit 2) instead of printing
  a bill that counts an order settled with the retailer as 0; with it, the bill is the local one;
- problem 9: `results --all` and repeated `--participant` fetch several participants at once,
  written as participants.csv of the local `clear` and bills.csv of the local `settle`; a
  participant that cannot be fetched is one error line, the others are still written, exit 1.
"""

import datetime
import random

import pytest

from mpc_market.common import keys
from mpc_market.mpc.local import free_ports
from tests.stats.test_service import start_aggregator

from helpers import Market, cli, read_rows, write_orders

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
DAY = datetime.datetime.now(datetime.UTC).date().isoformat()  # the aggregator takes days up to tomorrow
UNTRADEABLE = 'p00'  # random_orders gives p00 a sell above the ceiling: settled with the retailer


def write_readings(path, rows):
    with open(path, 'w') as f:
        f.write('participant,slot,net_wh\n' + ''.join(f'{p},{s},{n}\n' for p, s, n in rows))


def test_meter_destinations_bills_and_several_participants_like_the_local_commands(tmp_path):
    market = Market(tmp_path, participants=6, seed=13, extra_participants=['q00', 'q01'])
    aggregator_proc = None
    try:
        d = market.deployment
        keys.create_aggregator(d.keys)
        meters = market.participants + ['q00']  # q00 meters without orders; q01 never takes part
        (tmp_path / 'feeders.csv').write_text('participant,feeder,zone\n' + ''.join(f'{p},F1,Z1\n' for p in meters))
        cli('stats', 'keygen', '--out', tmp_path / 'op', '--name', 'dso', '--level', 'feeder', '--slots', 4,
            check=True)
        port, = free_ports(1)
        aggregator = f'127.0.0.1:{port}'
        config = tmp_path / 'aggregator.toml'
        config.write_text(f'[aggregator]\nlisten = "{aggregator}"\ndata_dir = "agg"\nkeys = "dep/keys"\n'
                          'feeders = "feeders.csv"\npublic_keys = ["op/dso.pub.json"]\nmin_cohort = 3\n')
        aggregator_proc = start_aggregator(config)

        market.client('round', 'open', '--round', 'r1', '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 120, '--readings-deadline-in', 600, '--day', DAY)
        market.submit_individually(market.participants)
        rng = random.Random(4)
        planned = {(r[0], r[1]): (r[3] if r[2] == 'buy' else -r[3]) for r in market.rows}
        readings = str(tmp_path / 'readings.csv')
        write_readings(readings, [(p, s, planned.get((p, s), 0) + rng.randint(-300, 300))
                                  for p in meters for s in range(4)])
        to_aggregator = ('--aggregator', aggregator, '--pubkey', tmp_path / 'op/dso.pub.json', '--feeders',
                         tmp_path / 'feeders.csv')

        # -- problem 4: the round is open (no readings yet): the aggregator still gets the day
        only = market.client('meter', 'submit', '--readings', readings, '--day', DAY, *to_aggregator,
                             '--aggregator-only', check=False)
        assert only.returncode == 0, only.stdout + only.stderr
        assert '  market nodes: not asked (--aggregator-only)' in only.stdout, only.stdout
        assert f'aggregator {aggregator}: {len(meters)} accepted, 0 already held, 0 not' in only.stdout, only.stdout
        assert only.stderr == ''
        both = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY,
                             *to_aggregator, check=False)
        why = f'no round of {DAY} takes readings now (r1 open)'
        assert both.returncode == 1, both.stdout + both.stderr
        assert f'  market nodes: nothing sent: {why}' in both.stdout, both.stdout
        assert f'aggregator {aggregator}: 0 accepted, {len(meters)} already held, 0 not' in both.stdout
        assert both.stderr == (f'error: market nodes got nothing: {why}; run the same command again in the '
                               "round's readings window\n"), both.stderr
        refused = market.client('meter', 'submit', '--readings', readings, '--day', DAY, *to_aggregator, check=False)
        assert refused.returncode == 2 and refused.stderr.startswith('error: --orders: '), refused.stderr
        market.close_and_wait()
        sent = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY,
                             *to_aggregator)
        assert f'market nodes: {len(meters)} accepted by every node, 0 not' in sent.stdout, sent.stdout
        assert f'aggregator {aggregator}: 0 accepted, {len(meters)} already held, 0 not' in sent.stdout
        market.client('round', 'close', '--round', 'r1')  # the readings deadline: now
        market.client('round', 'settled', '--round', 'r1', '--wait', 120)

        local = tmp_path / 'local'
        cli('settle', '--engine', 'plain', '--orders', market.orders, '--readings', readings, '--config',
            market.market, '--out', local, '--quiet', check=True)
        expected = read_rows(local / 'bills.csv')
        assert [b['participant'] for b in expected] == market.participants + ['q00']

        # -- problem 1: a bill needs the orders (an order settled with the retailer is not in the shares)
        reference, = [b for b in expected if b['participant'] == UNTRADEABLE]
        with_orders = market.client('results', '--participant', UNTRADEABLE, '--bill', '--round', 'r1', '--orders',
                                    market.orders)
        assert read_csv_text(with_orders.stdout) == [reference]
        without = market.client('results', '--participant', UNTRADEABLE, '--bill', '--round', 'r1', check=False)
        assert without.returncode == 2 and without.stdout == '', without.stdout
        assert without.stderr.count('\n') == 1 and without.stderr.startswith('error: --orders: --bill needs'), \
            without.stderr
        raw = market.client('results', '--participant', UNTRADEABLE, '--round', 'r1')  # per-slot shares only
        assert 'an order the retailer settles' in raw.stderr and 'give --orders' in raw.stderr, raw.stderr

        # -- problem 9: every participant whose key is held, as the local files
        out = tmp_path / 'all'
        market.client('results', '--all', '--round', 'r1', '--orders', market.orders, '--out', out)
        assert (out / 'participants.csv').read_text() == (tmp_path / 'plain' / 'participants.csv').read_text()
        market.client('results', '--all', '--bill', '--round', 'r1', '--orders', market.orders, '--out', out)
        assert read_rows(out / 'bills.csv') == expected  # q01 and the retailer took no part: left out
        assert (out / 'bills.csv').read_text() == (local / 'bills.csv').read_text()
        two = tmp_path / 'two'
        market.client('results', '--participant', 'p02', '--participant', 'p01', '--round', 'r1', '--orders',
                      market.orders, '--out', two)
        assert read_rows(two / 'participants.csv') == [r for r in market.plain if r['participant'] in ('p01', 'p02')]
        market.client('results', '--participant', 'p02', '--participant', 'p01', '--bill', '--round', 'r1',
                      '--orders', market.orders, '--out', two)
        assert read_rows(two / 'bills.csv') == [b for p in ('p02', 'p01') for b in expected if b['participant'] == p]

        # q01 has orders in this file but never submitted them: one error line, the others written, exit 1
        extended = str(tmp_path / 'extended.csv')
        write_orders(extended, market.rows + [('q01', 1, 'buy', 100, '0.15')])
        partial = tmp_path / 'partial'
        failed = market.client('results', '--all', '--round', 'r1', '--orders', extended, '--out', partial,
                               check=False)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        lines = failed.stderr.splitlines()
        assert len(lines) == 2 and lines[0].startswith('error: q01: ') and 'NOT_FOUND' in lines[0], lines
        assert lines[1] == 'error: 1 participants not fetched; the others were written to participants.partial.csv'
        # a partial set never takes the complete file's name, and is private
        assert (partial / 'participants.partial.csv').read_text() == (out / 'participants.csv').read_text()
        assert not (partial / 'participants.csv').exists()
        assert oct((partial / 'participants.partial.csv').stat().st_mode & 0o777) == '0o600'
        # a bill for a participant with orders in the round that no node holds is a failure, not absence
        billed = market.client('results', '--all', '--bill', '--round', 'r1', '--orders', extended, '--out', partial,
                               check=False)
        assert billed.returncode == 1 and 'q01' in billed.stderr and 'has orders in the round' in billed.stderr, \
            billed.stderr
        assert (partial / 'bills.partial.csv').exists() and not (partial / 'bills.csv').exists()
        unknown = market.client('results', '--participant', 'p01', '--participant', 'nobody', '--round', 'r1',
                                '--orders', market.orders, '--out', tmp_path / 'none', check=False)
        assert unknown.returncode == 2 and 'nobody' in unknown.stderr and not (tmp_path / 'none').exists()
        both_ways = market.client('results', '--all', '--participant', 'p01', check=False)
        assert both_ways.returncode == 2 and both_ways.stderr == 'error: --all: give --all or --participant, not both\n'
    finally:
        market.stop()
        if aggregator_proc is not None:
            aggregator_proc.terminate()
            aggregator_proc.wait(30)


def read_csv_text(text):
    import csv
    import io
    return list(csv.DictReader(io.StringIO(text)))
