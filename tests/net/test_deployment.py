"""The deployment end to end: broker + 3 node processes over mutual TLS (MPyC over TLS too),
orders through ``mpc-market submit``, results through ``mpc-market results``, compared with
``mpc-market clear --engine plain``; node and broker faults; what the broker sees."""

import os
import random
import secrets
import sqlite3
import subprocess
import time

import grpc
import pytest

from mpc_market.common import keys
from mpc_market.mpc.supervisor import CONNECTED
from mpc_market.net.client import BrokerClient
from mpc_market.net.tls import client_credentials, secure_channel
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import REPO, cli, node_fault_env, read_rows, wait_for, write_orders


@pytest.mark.slow
@pytest.mark.deployment
def test_end_to_end_matches_the_plaintext_reference_and_the_broker_sees_no_secret(shared_market):
    m = shared_market(['e2e'])
    m.open()
    m.submit_individually(m.participants)
    m.close_and_wait()
    m.check_results()
    with open(os.path.join(m.deployment.dir, 'node0.log')) as f:
        assert 'MPyC over TLS' in f.read()
    # The broker's whole state of the round: its parameters and the signed public results, nothing individual
    # (every file of the broker, all rounds, holds no envelope or package of it).
    db = sqlite3.connect(os.path.join(m.deployment.dir, 'broker', 'broker.db'))
    dump = '\n'.join(str(row) for table in ('rounds', 'public_results')
                     for row in db.execute(f'SELECT * FROM {table} WHERE round_id = ?', (m.round,)))
    db.close()
    assert m.round in dump
    node_db = sqlite3.connect(os.path.join(m.deployment.dir, 'node0', 'node.db'))
    own = node_db.execute('SELECT nonce, envelope, package FROM submissions WHERE round_id = ?', (m.round,)).fetchall()
    secrets = [bytes(v) for row in own for v in row[1:]]
    nonces = [row[0] for row in own]
    node_db.close()
    assert len(nonces) == len(m.participants)
    for name in m.participants:
        assert name not in dump
    for nonce in nonces:
        assert nonce not in dump
    broker_files = b''.join(open(os.path.join(root, f), 'rb').read()
                            for root, _, files in os.walk(os.path.join(m.deployment.dir, 'broker')) for f in files)
    for secret in secrets:
        assert secret[:64] not in broker_files
    assert not os.listdir(os.path.join(m.deployment.dir, 'node0', 'runs'))  # no stray share copies


@pytest.mark.slow
@pytest.mark.deployment
def test_seed_cases_one_and_two_in_deployment_rounds(shared_market):
    """Case II: communities from the round's market file (the operator's zone map), the network
    fee, and the paper's numbers from a deployment round, equal to the local reference; then
    case I (one market, merit order) in a second round of the same deployment."""
    m = shared_market(['seed2', 'seed1'], rows=[('P3', 0, 'sell', 200, '0.048'), ('P5', 0, 'sell', 180, '0.050'),
                     ('P2', 0, 'buy', 140, '0.096'), ('P4', 0, 'buy', 100, '0.096'), ('P2', 1, 'buy', 30, '0.139'),
                     ('P3', 2, 'sell', 20, '0.060'), ('P4', 2, 'buy', 15, '0.100'), ('P5', 3, 'buy', 5, '0.047')],
               market='[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\nzones = true\n'
                      'network_fee = 0.010\n[zones]\nA = ["P2", "P4", "P5"]\nB = ["P3"]\n')
    m.open()
    m.submit_individually(m.participants)
    m.close_and_wait()
    m.check_results()  # public.csv and every participant's rows (with zone, local_wh, cross_wh)
    rows = {r['participant']: r for r in read_rows(m.dir / 'results-seed2' / 'P5.csv') + read_rows(
        m.dir / 'results-seed2' / 'P3.csv') if r['slot'] == '0'}
    assert (rows['P5']['local_wh'], rows['P5']['cross_wh'], rows['P3']['cross_wh']) == ('180', '0', '60')
    # case I: the same orders in one market (round seed1), merit order
    one_market = m.dir / 'one-market.toml'
    one_market.write_text('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n')
    m.client('round', 'open', '--round', 'seed1', '--slots', '0-3', '--market', one_market, '--gate-closure-in', 120)
    m.submit_individually(m.participants, 'seed1')
    m.close_and_wait('seed1')
    matched = {}
    for p in m.participants:
        m.client('results', '--participant', p, '--round', 'seed1', '--orders', m.orders, '--out', m.dir / 'seed1')
        # one order per participant in slot 0: the unpacking fails if there were more or none
        (matched[p],) = [int(r['matched_wh']) for r in read_rows(m.dir / 'seed1' / f'{p}.csv') if r['slot'] == '0']
    assert matched == {'P2': 140, 'P3': 200, 'P4': 100, 'P5': 40}


@pytest.mark.slow
@pytest.mark.deployment
def test_round_mechanism_chosen_at_open(shared_market):
    """round open --mechanism: the round's market text says sdr; nodes, public results and each
    participant's rows follow it and equal the local reference."""
    m = shared_market(['mech', 'mech2'], participants=6)
    m.client('round', 'open', '--round', 'mech', '--slots', '0-3', '--market', m.market, '--mechanism', 'sdr',
             '--gate-closure-in', 120)
    m.submit_individually(m.participants)
    m.close_and_wait()
    sdr_market = m.dir / 'sdr.toml'
    sdr_market.write_text(open(m.market).read() + 'mechanism = "sdr"\n')
    cli('clear', '--engine', 'plain', '--orders', m.orders, '--config', sdr_market, '--out', m.dir / 'sdr', '--quiet',
        check=True)
    m.client('results', '--public', '--round', 'mech', '--out', m.dir / 'got')
    assert (m.dir / 'got' / 'public.csv').read_text() == (m.dir / 'sdr' / 'public.csv').read_text()
    assert (m.dir / 'got' / 'public.csv').read_text().startswith('slot,slot_start,buy_price,sell_price\n')
    reference = read_rows(m.dir / 'sdr' / 'participants.csv')
    for p in m.participants:
        m.client('results', '--participant', p, '--round', 'mech', '--orders', m.orders, '--out', m.dir / 'got')
        assert read_rows(m.dir / 'got' / f'{p}.csv') == [r for r in reference if r['participant'] == p], p
    bad = m.client('round', 'open', '--round', 'mech2', '--slots', '0-3', '--market', m.market, '--mechanism',
                   'auction', check=False)
    assert bad.returncode == 2
    # the round commands after it (issue 22, problem 8): a round without readings is never settled,
    # said at once; a submission with no open round says so; the list shows the round's mechanism
    started = time.monotonic()
    never = m.client('round', 'settled', '--round', 'mech', '--wait', 120, check=False)
    assert never.returncode == 2 and time.monotonic() - started < 10, never.stderr
    assert 'round mech takes no meter readings' in never.stderr and len(never.stderr.splitlines()) == 1
    late = m.client('submit', '--orders', m.participant_orders('p01'), check=False)
    assert late.returncode == 1 and 'no round is open (the latest, mech, is cleared)' in late.stderr, late.stderr
    listed = m.client('round', 'list').stdout.splitlines()
    row, = [line for line in listed[1:] if line.split()[0] == 'mech']  # the shared deployment lists others too
    assert listed[0].startswith('round ') and row.split()[:3] == ['mech', '-', 'cleared'] and 'sdr' in row
    assert 'mech2' not in '\n'.join(listed)


@pytest.mark.slow
@pytest.mark.deployment
def test_node_down_at_submission_then_resubmission(market):
    m = market(participants=6)
    m.open()
    m.deployment.kill('node2')
    proc = m.client('submit', '--orders', m.participant_orders('p01'), check=False)
    assert proc.returncode == 1 and 'node 2' in proc.stderr and 'resubmit' in proc.stderr
    m.deployment.start_node(2)
    m.deployment.wait_ready(names=['node2'])
    m.submit_individually(m.participants)  # p01 again: a fresh envelope replaces the half-delivered one
    m.close_and_wait()
    m.check_results()


@pytest.mark.slow
@pytest.mark.deployment
def test_node_killed_mid_clearing_fails_the_round_then_reruns_to_the_same_result(market):
    m = market(participants=6, node_env={1: node_fault_env('stall', 1, 120)})
    m.open()
    m.submit_individually(m.participants)
    m.client('round', 'close', '--round', 'r1')
    runs = m.dir / 'dep' / 'node1' / 'runs'  # node 1 is stuck inside its MPC run once its party connected
    wait_for(lambda: any(line.strip() == CONNECTED for log in runs.glob('*/party.log')
                         for line in log.read_text().splitlines()), 30, "node 1's clearing session")
    m.deployment.kill('node1')
    broker = BrokerClient(m.broker, m.keys)
    deadline = time.monotonic() + 30
    while (state := broker.status('r1')).state != market_pb2.RoundState.FAILED:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert 'lost connection to node 1' in state.reason or 'node 1 unreachable' in state.reason, state.reason
    m.deployment.start_node(1)  # restarted without the fault: the broker re-runs from the stored shares
    state = broker.wait('r1', 120)
    broker.close()
    assert state.state == market_pb2.RoundState.CLEARED and state.attempts >= 2
    m.check_results()


@pytest.mark.slow
@pytest.mark.deployment
def test_broker_killed_and_restarted_mid_round(market):
    m = market(participants=6, node_env={0: node_fault_env('stall', 0, 3)})
    m.open()
    m.submit_individually(m.participants[:3])
    m.deployment.kill('broker')
    m.deployment.start_broker()
    m.deployment.wait_ready(names=['broker'])
    m.submit_individually(m.participants[3:])
    m.client('round', 'close', '--round', 'r1')
    m.deployment.kill('broker')  # while the nodes clear (node 0 is slow on purpose)
    m.deployment.start_broker()
    m.deployment.wait_ready(names=['broker'])
    m.close_and_wait()
    m.check_results()


def _node_stub(m, index, client='submitter', keys_dir=None):
    credentials = client_credentials(keys_dir or m.keys, 'clients', client)
    address = BrokerClient(m.broker, m.keys).status(m.round).node_addresses[index]
    return market_pb2_grpc.NodeStub(secure_channel(address, credentials, f'node{index}'))


@pytest.mark.slow
@pytest.mark.deployment
def test_rejections_by_running_nodes_and_broker(shared_market, tmp_path):
    m = shared_market(['rej', 'rej2'], participants=4)
    m.open(gate_in=2)
    # Orders for a slot outside the round: one-line input error, exit 2, nothing sent.
    bad = str(tmp_path / 'bad.csv')
    write_orders(bad, [('p00', 9, 'buy', 5, '0.15')])
    proc = m.client('submit', '--orders', bad, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f'error: {bad}:2: slot:'), proc.stderr
    # Only the broker may close a round at a node; only an operator may open one at the broker.
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 0).CloseRound(market_pb2.RoundRef(round_id=m.round), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    proc = m.client('round', 'open', '--round', 'rej2', '--slots', '0', '--market', m.market, '--client', 'submitter',
                    check=False)
    assert proc.returncode == 1 and 'PERMISSION_DENIED' in proc.stderr
    # Re-opening an existing round (here: a new gate closure) is an error, not a silent success.
    proc = m.client('round', 'open', '--round', m.round, '--slots', '0-3', '--market', m.market, check=False)
    assert proc.returncode == 1 and 'ALREADY_EXISTS' in proc.stderr and 'exists already' in proc.stderr, proc.stderr
    # A client whose certificate is from another CA is refused by the TLS handshake.
    other = str(tmp_path / 'other')
    keys.create_ca(other)
    keys.create_client(other, 'submitter')
    os.replace(os.path.join(other, 'ca', 'ca.pem'), os.path.join(other, 'ca', 'ours.pem'))
    with (open(os.path.join(m.keys, 'ca', 'ca.pem'), 'rb') as src,
          open(os.path.join(other, 'ca', 'ca.pem'), 'wb') as dst):
        dst.write(src.read())  # trusts our servers, but presents a foreign client certificate
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 0, keys_dir=other).RoundStatus(market_pb2.RoundRef(round_id=m.round), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Late orders: after gate closure every node refuses, nothing is stored.
    gate_closure = BrokerClient(m.broker, m.keys).status(m.round).gate_closure_unix_ms / 1000
    time.sleep(max(0.0, gate_closure + 0.5 - time.time()))
    proc = m.client('submit', '--round', m.round, '--orders', m.participant_orders('p01'), check=False)
    assert proc.returncode == 1 and ('not open' in proc.stderr or 'closed for submissions' in proc.stderr)
    m.close_and_wait()
    state = BrokerClient(m.broker, m.keys).status(m.round)
    assert state.accepted == 0
    # A participant cannot fetch another's results: the request must be signed by its own key.
    from mpc_market.net.messages import results_request_bytes
    from mpc_market.net.store import now_ms
    key = keys.load_participant_key(m.keys, 'p00')
    stamp = now_ms()
    nonce = os.urandom(16).hex()
    request = market_pb2.ResultsRequest(round_id=m.round, participant='p01', unix_ms=stamp, node_index=1, nonce=nonce,
                                        signature=key.sign(results_request_bytes(m.round, 'p01', 1, nonce, stamp)))
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 1).FetchResults(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _netns_available(prefix):
    if os.geteuid() != 0:
        return 'needs root for ip netns'
    probe = subprocess.run(['ip', 'netns', 'add', f'{prefix}-probe'], capture_output=True, text=True)
    if probe.returncode != 0:
        return f'cannot create network namespaces: {probe.stderr.strip()}'
    subprocess.run(['ip', 'netns', 'del', f'{prefix}-probe'], capture_output=True)
    return None


def run_netns_names():
    """Namespace prefix and subnet unique to this run, so two runs on one host cannot collide."""
    rng = random.SystemRandom()
    return f't{secrets.token_hex(2)}', f'10.{rng.randint(100, 250)}.{rng.randint(0, 255)}'


NETNS_SCRIPT = os.path.join(REPO, 'parties', 'netns.sh')


@pytest.mark.slow
@pytest.mark.deployment
@pytest.mark.netns
def test_end_to_end_with_nodes_in_separate_network_namespaces(market):
    prefix, subnet = run_netns_names()
    reason = _netns_available(prefix)
    if reason:
        pytest.skip(reason)
    env = dict(os.environ, NETNS_PREFIX=prefix, NETNS_SUBNET=subnet)
    subprocess.run(['bash', NETNS_SCRIPT, 'up', '3'], check=True, capture_output=True, text=True, env=env)
    try:
        m = market(participants=6, netns=(prefix, subnet))
        m.open()
        m.submit_individually(m.participants)
        m.close_and_wait()
        m.check_results()
        m.stop()
    finally:
        subprocess.run(['bash', NETNS_SCRIPT, 'down', '3'], capture_output=True, text=True, env=env)


def test_bad_node_and_broker_configs_are_one_line_errors(tmp_path):
    bad = tmp_path / 'node.toml'
    bad.write_text('[node]\nindex = "zero"\nlisten = "127.0.0.1:1"\ndata_dir = "d"\nkeys = "k"\n'
                   '[deployment]\nnodes = ["a:1", "b:2", "c:3"]\nmpc = ["a:4", "b:5", "c:6"]\n')
    proc = cli('node', '--config', bad, check=False)
    assert proc.returncode == 2 and proc.stderr == f'error: {bad}:2: index: expected 0..2, got \'zero\'\n'
    bad.write_text('[broker]\nlisten = "127.0.0.1:1"\ndata_dir = "d"\nkeys = "k"\n[deployment]\nnodes = "a:1"\n')
    proc = cli('broker', '--config', bad, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f'error: {bad}:6: nodes: ')
    assert not (tmp_path / 'd').exists()  # nothing created
