"""Settlement rounds over gRPC: meter uploads after clearing, a second MPC session at the readings
deadline, bills and the retailer's view reconstructed from shares, equal to the local settle."""

import random
import time

import pytest

from helpers import Market, cli, read_rows, wait_for

DAY = '2026-12-01'
pytestmark = [pytest.mark.deployment, pytest.mark.slow]


def write_readings(path, rows):
    with open(path, 'w') as f:
        f.write('participant,slot,net_wh\n' + ''.join(f'{p},{s},{n}\n' for p, s, n in rows))


def meter_readings(market, rng, skip=(), partial=(), extra=()):
    """A reading per (participant, slot 0-3): planned +- noise; none for skip; slot 0 only for partial."""
    planned = {(r[0], r[1]): (r[3] if r[2] == 'buy' else -r[3]) for r in market.rows}
    rows = []
    for p in market.participants + list(extra):
        for s in range(4):
            if p in skip or (p in partial and s > 0):
                continue
            rows.append((p, s, planned.get((p, s), 0) + rng.randint(-300, 300)))
    return rows


def test_a_round_settles_from_meter_uploads_like_the_local_settle(tmp_path):
    market = Market(tmp_path, participants=8, seed=11, extra_participants=['q00'])
    try:
        market.client('round', 'open', '--round', 'r1', '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 120, '--readings-deadline-in', 600, '--day', DAY)
        market.submit_individually(market.participants)
        # before clearing, the nodes refuse readings: the client finds no round taking them and sends the
        # market nodes nothing; they were asked for (no --aggregator-only), so that fails the command
        readings = str(tmp_path / 'readings.csv')
        rows = meter_readings(market, random.Random(3), skip={'p01'}, partial={'p02'}, extra=['q00'])
        write_readings(readings, rows)
        early = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY,
                              check=False)
        why = 'no round of 2026-12-01 takes readings now (r1 open)'
        assert early.returncode == 1 and f'  market nodes: nothing sent: {why}\n' in early.stdout, early.stdout
        assert early.stderr == (f"error: market nodes got nothing: {why}; run the same command again in the round's "
                                'readings window\n'), early.stderr
        market.close_and_wait()
        stray = str(tmp_path / 'stray.csv')
        write_readings(stray, [('p00', 0, 5), ('p00', 9, 5)])  # slot 9 is not delivered that day
        refused = market.client('meter', 'submit', '--readings', stray, '--orders', market.orders, '--day', DAY,
                                check=False)
        assert refused.returncode == 2 and f'{stray}:3: slot: slot 9 is not delivered on {DAY}' in refused.stderr
        upload = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY)
        assert '8 accepted by every node, 0 not' in upload.stdout, upload.stdout
        again = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY)
        assert '8 accepted by every node, 0 not' in again.stdout  # a retry replaces the same values
        market.client('round', 'close', '--round', 'r1')  # the readings deadline: now
        settled = market.client('round', 'settled', '--round', 'r1', '--wait', 120, check=False)
        assert settled.returncode == 0 and 'settled' in settled.stdout, settled.stdout + settled.stderr
        listing = market.client('round', 'list').stdout
        assert 'r1' in listing and DAY in listing and ' settled ' in listing, listing

        # the local reference on the same data: the readings every node held
        local = tmp_path / 'local'
        cli('settle', '--engine', 'plain', '--orders', market.orders, '--readings', readings, '--config',
            market.market, '--out', local, '--quiet', check=True)
        expected = read_rows(local / 'bills.csv')
        assert {b['participant'] for b in expected} == set(market.participants) | {'q00'}
        for bill in expected:
            out = tmp_path / f'bill-{bill["participant"]}'
            market.client('results', '--participant', bill['participant'], '--bill', '--from', DAY, '--to', DAY,
                          '--orders', market.orders, '--out', out)
            assert read_rows(out / 'bills.csv') == [bill], bill['participant']
        view = tmp_path / 'retailer'
        market.client('results', '--retailer', '--round', 'r1', '--client', 'retailer', '--out', view)
        assert read_rows(view / 'retailer.csv') == read_rows(local / 'retailer.csv')
        # the retailer's view needs the retailer's certificate, not only its key
        refused = market.client('results', '--retailer', '--round', 'r1', '--out', tmp_path / 'x', check=False)
        assert refused.returncode != 0 and 'PERMISSION_DENIED' in refused.stderr, refused.stderr
        assert_settlement_requests_are_bound_to_their_kind(market)
    finally:
        market.stop()


def assert_settlement_requests_are_bound_to_their_kind(market):
    """A results request's kind is signed: one signed for clearing rows cannot fetch settlement rows,
    a participant cannot ask for the retailer's view, an unknown kind is refused like a forgery."""
    import os

    import grpc

    from mpc_market.common import keys
    from mpc_market.net.client import BrokerClient
    from mpc_market.net.messages import results_request_bytes
    from mpc_market.net.store import now_ms
    from mpc_market.net.tls import client_credentials, secure_channel
    from mpc_market.rpc import market_pb2, market_pb2_grpc
    address = BrokerClient(market.broker, market.keys).status('r1').node_addresses[0]
    stub = market_pb2_grpc.NodeStub(secure_channel(address, client_credentials(market.keys, 'clients', 'submitter'),
                                                   'node0'))

    def ask(participant, kind, signed_kind=None):
        stamp, nonce = now_ms(), os.urandom(16).hex()
        signature = keys.load_participant_key(market.keys, participant).sign(results_request_bytes(
            'r1', participant, 0, nonce, stamp, kind if signed_kind is None else signed_kind))
        try:
            return stub.FetchResults(market_pb2.ResultsRequest(round_id='r1', participant=participant, unix_ms=stamp,
                                                               node_index=0, nonce=nonce, kind=kind,
                                                               signature=signature), timeout=10).status
        except grpc.RpcError as exc:
            return exc.code()
    assert ask('p00', 'settlement') == 'metered'
    assert ask('p00', 'settlement', signed_kind='') == grpc.StatusCode.UNAUTHENTICATED
    assert ask('p00', 'retailer') == grpc.StatusCode.PERMISSION_DENIED
    assert ask('retailer', 'retailer') == grpc.StatusCode.PERMISSION_DENIED  # its key, not its certificate
    assert ask('p00', 'bogus') == grpc.StatusCode.UNAUTHENTICATED
    assert ask('p01', 'settlement') == 'missing-reading'


def bills_over(market, day, participants):
    rows = []
    for p in participants:
        out = market.dir / f'bill-{day}-{p}'
        market.client('results', '--participant', p, '--bill', '--from', day, '--to', day, '--orders', market.orders,
                      '--out', out)
        rows += read_rows(out / 'bills.csv')
    return rows


def test_settlement_survives_a_killed_node_and_broker_and_missing_readings(tmp_path):
    """Broker killed between clearing and settlement, node killed in the settlement session: the
    settlement re-runs to the same bills. A round whose readings never arrive settles by the
    missing-reading rule at its deadline, and its public settlement says so."""
    from mpc_market import api
    from mpc_market.mpc.supervisor import CONNECTED
    from mpc_market.net.client import BrokerClient
    from mpc_market.rpc import market_pb2

    from helpers import node_fault_env
    market = Market(tmp_path, participants=6, seed=5, node_env={1: node_fault_env('stall-settle', 1, 120)})
    try:
        market.client('round', 'open', '--round', 'r1', '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 120, '--readings-deadline-in', 600, '--day', DAY)
        market.submit_individually(market.participants)
        market.close_and_wait()
        readings = str(tmp_path / 'readings.csv')
        write_readings(readings, meter_readings(market, random.Random(8), skip={'p03'}))
        market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY)
        market.deployment.kill('broker')  # between clearing and settlement
        market.deployment.start_broker()
        market.deployment.wait_ready(names=['broker'])
        market.client('round', 'close', '--round', 'r1')  # readings deadline: now
        broker = BrokerClient(market.broker, market.keys, 'operator')
        deadline = time.monotonic() + 30
        while broker.status('r1').settlement != market_pb2.RoundState.SETTLING:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # node 1 is inside its settlement session: its party connected to the others (then it stalls)
        runs = tmp_path / 'dep' / 'node1' / 'runs'
        wait_for(lambda: any(line.strip() == CONNECTED for log in runs.glob('*.settle.*/party.log')
                             for line in log.read_text().splitlines()), 30, "node 1's settlement session")
        market.deployment.kill('node1')
        while (state := broker.status('r1')).settlement != market_pb2.RoundState.SETTLE_FAILED:
            assert time.monotonic() < deadline + 30, state
            time.sleep(0.2)
        market.deployment.start_node(1)  # without the fault: the broker re-runs the settlement
        state = broker.wait('r1', 120, settled=True)
        assert state.settlement == market_pb2.RoundState.SETTLED and state.settle_attempts >= 2, state
        local = tmp_path / 'local'
        cli('settle', '--engine', 'plain', '--orders', market.orders, '--readings', readings, '--config',
            market.market, '--out', local, '--quiet', check=True)
        expected = read_rows(local / 'bills.csv')
        assert bills_over(market, DAY, [b['participant'] for b in expected]) == expected

        # round 2: nobody uploads; the broker settles at the deadline by the missing-reading rule
        market.client('round', 'open', '--round', 'r2', '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 3, '--readings-deadline-in', 1, '--day', '2026-12-02')
        market.submit_individually(market.participants, round_id='r2')
        state = broker.wait('r2', 90, settled=True)  # gate closure, clearing, deadline, settlement: by the clock
        broker.close()
        assert state.settlement == market_pb2.RoundState.SETTLED, state
        public = market.client('results', '--public', '--round', 'r2').stderr
        assert '0 metered, 6 without a reading' in public and 'exporting nothing' in public, public
        book = api.load_book(market.orders, market.market)
        reference = {b.participant: b for b in api.settle(book, {}, engine='plain').bills}
        config = book.config
        got = bills_over(market, '2026-12-02', market.participants)
        assert got == [{'participant': p, 'trade_amount': config.format_amount(b.trade_amount),
                        'deviation_amount': config.format_amount(b.deviation_amount),
                        'total_amount': config.format_amount(b.total_amount),
                        'retailer_only_amount': config.format_amount(b.retailer_only_amount),
                        'saving': config.format_amount(b.saving)}
                       for p, b in sorted(reference.items())]
    finally:
        market.stop()
