"""The whole market day over gRPC, end to end, every role its own process with TLS.

A broker calendar runs two consecutive daily rounds of 4 slots (a double auction, then sdr).
Participants submit orders; the rounds clear at their gate closures; meters upload once per
day to the market nodes and the statistics aggregator (one late, one missing, one tampered in
transit); each round settles at its readings deadline. Every participant's bill, per round and
over the period, and the retailer's view equal the local ``mpc-market settle --engine plain`` on
the data the nodes held; the DSO's feeder aggregates equal the plaintext sums.
"""

import datetime
import os
import random
import subprocess
import sys
import time
from decimal import Decimal

import pytest

from mpc_market.common import keys
from mpc_market.mpc.local import free_ports
from mpc_market.net.client import BrokerClient
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.rpc import market_pb2
from mpc_market.stats import paillier
from mpc_market.stats.reference import plain_totals
from mpc_market.stats.release import decrypt_bundle

from helpers import MARKET, cli, node_fault_env, random_orders, read_rows, wait_for, write_orders

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
PARTICIPANTS = [f'p{i:02d}' for i in range(8)]
FEEDERS = {p: ('F1' if i < 4 else 'F2', 'Z1') for i, p in enumerate(PARTICIPANTS)}
MISSING, TAMPERED, LATE = 'p05', 'p06', 'p07'
# the calendar, from the broker's start: both rounds open at once; the first one's gate closes after
# START_IN_S - GATE_BEFORE_S (time for the broker to start and both rounds' orders), its readings window
# opens GATE_BEFORE_S + PERIOD_S later (its clearing and a broker restart fit in) and stays open
# DEADLINE_AFTER_S (an upload takes about a second); the second round follows PERIOD_S (the least) later
START_IN_S, GATE_BEFORE_S, PERIOD_S, DEADLINE_AFTER_S = 8, 2, 10, 6
STATE = market_pb2.RoundState


def start_aggregator(root, env):
    """The aggregator process; its clock runs two days ahead (test only) so today's day can be fetched."""
    log = open(root / 'aggregator.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'mpc_market', 'stats', 'aggregator', '--config',
                             str(root / 'aggregator.toml')], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **env))
    wait_for(lambda: 'listening' in (root / 'aggregator.log').read_text() or proc.poll() is not None, 60,
             'the aggregator')
    assert proc.poll() is None, (root / 'aggregator.log').read_text()
    return proc, log


def readings_rows(orders, rng, slots):
    planned = {(p, s): (e if side == 'buy' else -e) for p, s, side, e, _ in orders}
    return [(p, s, planned.get((p, s), 0) + rng.randint(-300, 300)) for p in PARTICIPANTS for s in slots]


def write_readings(path, rows):
    with open(path, 'w') as f:
        f.write('participant,slot,net_wh\n' + ''.join(f'{p},{s},{n}\n' for p, s, n in rows))


def tamper_readings_for(monkeypatch, participant, node):
    """Change participant's reading package for one node after it was signed (a man in the middle)."""
    from mpc_market.net.submit import Submitter
    original = Submitter._requests

    def requests(self, round_id, participants, keys_, values, kind='order'):
        out = original(self, round_id, participants, keys_, values, kind)
        for envelope, per_node in out:
            if kind == 'readings' and envelope.participant == participant:
                package = bytearray(per_node[node].package)
                package[0] ^= 1
                per_node[node].package = bytes(package)
        return out
    monkeypatch.setattr(Submitter, '_requests', requests)


def local_settle(tmp_path, name, orders, readings, mechanism):
    orders_path, readings_path = tmp_path / f'{name}-orders.csv', tmp_path / f'{name}-readings.csv'
    out = tmp_path / name
    write_orders(str(orders_path), orders)
    write_readings(readings_path, readings)
    cli('settle', '--engine', 'plain', '--orders', orders_path, '--readings', readings_path, '--config',
        tmp_path / 'dep' / 'market.toml', '--mechanism', mechanism, '--out', out, '--quiet', check=True)
    return {b['participant']: b for b in read_rows(out / 'bills.csv')}, read_rows(out / 'retailer.csv')


def test_two_calendar_days_settle_to_the_local_bills_and_the_dso_sums(tmp_path, monkeypatch):
    now = datetime.datetime.now(datetime.UTC)
    if (now + datetime.timedelta(seconds=120)).date() != now.date():  # both rounds deliver on one UTC day
        time.sleep((datetime.datetime.combine(now.date() + datetime.timedelta(days=1), datetime.time(),
                                              datetime.UTC) - now).total_seconds() + 1)
    rng = random.Random(21)
    day1 = random_orders(rng, len(PARTICIPANTS))                                  # slots 0-3
    day2 = [(p, s + 4, side, e, lim) for p, s, side, e, lim in random_orders(rng, len(PARTICIPANTS))]
    orders = tmp_path / 'orders.csv'
    write_orders(str(orders), day1 + day2)
    readings1, readings2 = readings_rows(day1, rng, range(4)), readings_rows(day2, rng, range(4, 8))
    readings = tmp_path / 'readings.csv'
    write_readings(readings, readings1 + readings2)

    d = LocalDeployment(str(tmp_path / 'dep')).create(PARTICIPANTS, node_options={'clearing_timeout_s': 120})
    (tmp_path / 'dep' / 'market.toml').write_text(MARKET)
    keys.create_aggregator(d.keys)
    keys.create_client(d.keys, 'dso')
    (tmp_path / 'feeders.csv').write_text('participant,feeder,zone\n' + ''.join(
        f'{p},{f},{z}\n' for p, (f, z) in FEEDERS.items()))
    cli('stats', 'keygen', '--out', tmp_path / 'op', '--name', 'dso', '--level', 'feeder', '--slots', 8, check=True)
    port, = free_ports(1)
    aggregator = f'127.0.0.1:{port}'
    (tmp_path / 'aggregator.toml').write_text(
        f'[aggregator]\nlisten = "{aggregator}"\ndata_dir = "agg"\nkeys = "dep/keys"\nfeeders = "feeders.csv"\n'
        'public_keys = ["op/dso.pub.json"]\nmin_cohort = 3\n')
    for i in range(3):
        d.start_node(i)  # starting while the aggregator does
    try:
        stats_proc, stats_log = start_aggregator(tmp_path, node_fault_env('clock-days', 0, 2))
    except BaseException:
        d.stop()
        raise
    broker = None
    try:
        d.wait_ready()
        # the calendar starts from now, the nodes running: their start-up takes none of its time
        start = datetime.datetime.fromtimestamp(time.time() + START_IN_S, datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
        with open(d.broker_config, 'a') as f:
            f.write(f'\n[calendar]\nmarket = "market.toml"\nmechanism = ["double-auction", "sdr"]\nstart = {start}\n'
                    f'period_s = {PERIOD_S}\nslots = 4\nopen_before_s = 35\ngate_closure_before_s = {GATE_BEFORE_S}\n'
                    f'readings_after_s = 0\nreadings_deadline_after_s = {DEADLINE_AFTER_S}\nrounds = 2\n')
        page_port, = free_ports(1)
        d.start_broker(http=f'127.0.0.1:{page_port}')
        d.wait_ready(names=['broker'])
        broker = BrokerClient(d.broker_address, d.keys, 'operator')
        rounds = wait_for(lambda: len(broker.rounds()) == 2 and broker.rounds(), 40, 'both calendar rounds to open')
        rounds = sorted(rounds, key=lambda r: min(r.slots))  # opened in one tick: list order by time is a tie
        first, second = (r.round_id for r in rounds)
        day = rounds[0].day
        assert rounds[1].day == day and [list(r.slots) for r in rounds] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        for round_id, rows in ((first, day1), (second, day2)):
            write_orders(str(tmp_path / f'{round_id}.csv'), rows)
            cli('submit', '--broker', d.broker_address, '--keys', d.keys, '--round', round_id, '--orders',
                tmp_path / f'{round_id}.csv', check=True)

        def upload(*extra):
            return cli('meter', 'submit', '--broker', d.broker_address, '--keys', d.keys, '--readings', readings,
                       '--orders', orders, '--day', day, '--aggregator', aggregator, '--pubkey',
                       tmp_path / 'op/dso.pub.json', '--feeders', tmp_path / 'feeders.csv', *extra)

        def in_window(round_id):
            state = broker.status(round_id)
            return state.settlement == STATE.READINGS and state.readings_open_unix_ms <= time.time() * 1000

        on_time = [p for p in PARTICIPANTS if p not in (MISSING, LATE)]
        wait_for(lambda: broker.status(first).state == STATE.CLEARED, 60, f'{first} to clear')
        d.kill('broker')  # between clearing and settlement: the calendar resumes from the store and the nodes
        d.start_broker(http=f'127.0.0.1:{page_port}')
        d.wait_ready(names=['broker'])
        wait_for(lambda: in_window(first), 60, f'the readings window of {first}')
        with monkeypatch.context() as patch:
            tamper_readings_for(patch, TAMPERED, 1)
            sent = upload(*sum((['--participant', p] for p in on_time), []))
        assert sent.returncode == 1 and f'{TAMPERED}: node 1 did not accept: DATA_LOSS' in sent.stderr, sent.stderr
        assert f'market nodes: {len(on_time) - 1} accepted by every node, 1 not' in sent.stdout, sent.stdout
        assert f'aggregator {aggregator}: {len(on_time)} accepted' in sent.stdout, sent.stdout
        assert broker.wait(first, 60, settled=True).settlement == STATE.SETTLED

        wait_for(lambda: in_window(second), 60, f'the readings window of {second}')
        late = upload('--participant', LATE)
        assert late.returncode == 0 and f'not sent (the round takes no readings now; once settled, they are late): ' \
            f'{first} (settled)' in late.stdout, late.stdout
        again = upload(*sum((['--participant', p] for p in on_time), []))
        assert again.returncode == 0 and f'0 accepted, {len(on_time)} already held' in again.stdout, again.stdout
        assert broker.wait(second, 60, settled=True).settlement == STATE.SETTLED

        # the local reference on the data every node held
        held1 = [r for r in readings1 if r[0] not in (MISSING, TAMPERED, LATE)]
        held2 = [r for r in readings2 if r[0] != MISSING]
        bills1, retailer1 = local_settle(tmp_path, 'day1', day1, held1, 'double-auction')
        bills2, retailer2 = local_settle(tmp_path, 'day2', day2, held2, 'sdr')
        for round_id, bills in ((first, bills1), (second, bills2)):
            for p, bill in bills.items():
                out = tmp_path / f'bill-{round_id}-{p}'
                cli('results', '--broker', d.broker_address, '--keys', d.keys, '--participant', p, '--bill',
                    '--round', round_id, '--orders', orders, '--out', out, check=True)
                assert read_rows(out / 'bills.csv') == [bill], (round_id, p)
        for p in PARTICIPANTS:
            out = tmp_path / f'bill-{p}'
            cli('results', '--broker', d.broker_address, '--keys', d.keys, '--participant', p, '--bill', '--from',
                day, '--to', day, '--orders', orders, '--out', out, check=True)
            got, = read_rows(out / 'bills.csv')
            for column in ('trade_amount', 'deviation_amount', 'total_amount', 'retailer_only_amount', 'saving'):
                expected = sum(Decimal(b[p][column]) for b in (bills1, bills2) if p in b)
                assert Decimal(got[column]) == expected, (p, column)
        for round_id, retailer in ((first, retailer1), (second, retailer2)):
            out = tmp_path / f'retailer-{round_id}'
            cli('results', '--broker', d.broker_address, '--keys', d.keys, '--retailer', '--round', round_id,
                '--client', 'retailer', '--out', out, check=True)
            assert read_rows(out / 'retailer.csv') == retailer

        # the operator page: both rounds settled, with the counts of the public settlement only
        import json
        import urllib.request
        with urllib.request.urlopen(f'http://127.0.0.1:{page_port}/rounds.json', timeout=10) as reply:
            page = {r['round_id']: r for r in json.load(reply)['rounds']}
        assert [page[r]['state'] for r in (first, second)] == ['settled', 'settled']
        assert [page[r]['settlement']['missing_readings'] for r in (first, second)] == [3, 1]
        assert all(page[r]['settlement']['invalid_readings'] == 0 for r in (first, second))
        assert not any(p in json.dumps(page) for p in PARTICIPANTS)  # no identity on the page

        # the DSO: per feeder and slot, the sums of the meter-days the aggregator accepted
        cli('stats', 'fetch', '--aggregator', aggregator, '--keys', d.keys, '--pubkey', tmp_path / 'op/dso.pub.json',
            '--day', day, '--out', tmp_path / 'dso', check=True)
        private = paillier.load_private(str(tmp_path / 'op/dso.key.json'))
        _, totals = decrypt_bundle(private, str(tmp_path / f'dso/dso-{day}.aggregates.json'))
        layout = private.public.layout
        days = {}
        for p, s, net in readings1 + readings2:
            if p != MISSING:
                values = days.setdefault(p, [0] * layout.values)
                values[s], values[layout.slots + s] = max(net, 0), max(-net, 0)
        assert totals == plain_totals(days, FEEDERS, 3, 'feeder', layout)
        assert [(g.name, g.meters) for g in totals] == [('F1', 4), ('F2', 3)]
    finally:
        if broker is not None:
            broker.close()
        d.stop()
        stats_proc.terminate()
        stats_proc.wait(30)
        stats_log.close()
