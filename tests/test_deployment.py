"""The deployment end to end: broker + 3 node processes over mutual TLS (MPyC over TLS too),
orders through ``mpc-market submit``, results through ``mpc-market results``, compared with
``mpc-market clear --engine plain``; node and broker faults; what the broker sees."""

import csv
import os
import random
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest

from mpc_market.common import keys
from mpc_market.net.client import BrokerClient
from mpc_market.net.tls import client_credentials, secure_channel
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import node_fault_env

MARKET = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\n'
SLOTS = [0, 1, 2]


def random_orders(rng, participants):
    """Ties, exact band edges, an untradeable order, a slot with buyers only, maximum quantities."""
    rows = []
    for i in range(participants):
        for slot in SLOTS:
            if rng.random() < 0.2:
                continue
            side = 'buy' if slot == 2 else rng.choice(('buy', 'sell'))
            energy = rng.choice((1, 1000, rng.randint(1, 1000)))
            limit = rng.choice(('0.10', '0.15', '0.20', f'0.1{rng.randint(0, 9)}'))
            rows.append((f'p{i:02d}', slot, side, energy, limit))
    rows.append(('p00', 3, 'sell', 7, '0.25'))  # above the ceiling: settled with the retailer
    return rows


def write_orders(path, rows):
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['participant', 'slot', 'side', 'energy_wh', 'limit_price'])
        writer.writerows(rows)


def cli(*args, check=True, cwd=None):
    proc = subprocess.run([sys.executable, '-m', 'mpc_market', *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


class Market:
    """A random market, its plaintext reference, and a running deployment."""

    def __init__(self, tmp_path, participants=10, seed=7, netns=False, node_env=None):
        self.dir = tmp_path
        self.rows = random_orders(random.Random(seed), participants)
        self.participants = sorted({r[0] for r in self.rows})
        self.orders = str(tmp_path / 'orders.csv')
        self.market = str(tmp_path / 'market.toml')
        write_orders(self.orders, self.rows)
        with open(self.market, 'w') as f:
            f.write(MARKET)
        cli('clear', '--engine', 'plain', '--orders', self.orders, '--config', self.market, '--out', tmp_path / 'plain',
            '--quiet')
        self.plain = read_rows(tmp_path / 'plain' / 'participants.csv')
        self.deployment = LocalDeployment(str(tmp_path / 'dep'), netns=netns).create(
            self.participants, node_options={'connect_timeout_s': 20, 'clearing_timeout_s': 120})
        for i in range(3):
            self.deployment.start_node(i, (node_env or {}).get(i))
        self.deployment.start_broker()
        self.deployment.wait_ready()
        self.broker = self.deployment.broker_address
        self.keys = self.deployment.keys

    def client(self, *args, check=True):
        return cli(*args, '--broker', self.broker, '--keys', self.keys, check=check)

    def open(self, round_id='r1', gate_in=120):
        self.client('round', 'open', '--round', round_id, '--slots', '0-3', '--market', self.market,
                    '--gate-closure-in', gate_in)

    def participant_orders(self, participant):
        path = str(self.dir / f'orders-{participant}.csv')
        write_orders(path, [r for r in self.rows if r[0] == participant])
        return path

    def submit_individually(self, participants, round_id='r1'):
        """Every participant runs its own `mpc-market submit`, concurrently."""
        procs = [subprocess.Popen([sys.executable, '-m', 'mpc_market', 'submit', '--broker', self.broker, '--keys',
                                   self.keys, '--round', round_id, '--orders', self.participant_orders(p)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in participants]
        for p, proc in zip(participants, procs):
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, f'{p}: {out}{err}'

    def close_and_wait(self, round_id='r1', timeout=120):
        proc = self.client('round', 'close', '--round', round_id, '--wait', timeout, check=False)
        assert proc.returncode == 0 and ': cleared;' in proc.stdout, proc.stdout + proc.stderr

    def check_results(self, round_id='r1'):
        """Public results and every participant's own rows equal the plaintext reference's."""
        out = self.dir / f'results-{round_id}'
        self.client('results', '--public', '--round', round_id, '--out', out)
        with open(out / 'public.csv') as f, open(self.dir / 'plain' / 'public.csv') as g:
            assert f.read() == g.read()
        for p in self.participants:
            self.client('results', '--participant', p, '--round', round_id, '--orders', self.orders, '--out', out)
            assert read_rows(out / f'{p}.csv') == [r for r in self.plain if r['participant'] == p], p

    def stop(self):
        self.deployment.stop()


@pytest.fixture
def market(tmp_path):
    markets = []

    def start(**kwargs):
        markets.append(Market(tmp_path, **kwargs))
        return markets[-1]
    yield start
    for m in markets:
        m.stop()


def test_end_to_end_matches_the_plaintext_reference_and_the_broker_sees_no_secret(market):
    m = market()
    m.open()
    m.submit_individually(m.participants)
    m.close_and_wait()
    m.check_results()
    with open(os.path.join(m.deployment.dir, 'node0.log')) as f:
        assert 'MPyC over TLS' in f.read()
    # The broker's whole state: round parameters and the signed public results, nothing individual.
    db = sqlite3.connect(os.path.join(m.deployment.dir, 'broker', 'broker.db'))
    dump = '\n'.join(str(row) for table in ('rounds', 'public_results') for row in db.execute(f'SELECT * FROM {table}'))
    db.close()
    node_db = sqlite3.connect(os.path.join(m.deployment.dir, 'node0', 'node.db'))
    secrets = [bytes(v) for row in node_db.execute('SELECT nonce, envelope, package FROM submissions') for v in row[1:]]
    nonces = [row[0] for row in node_db.execute('SELECT nonce FROM submissions')]
    node_db.close()
    for name in m.participants:
        assert name not in dump
    for nonce in nonces:
        assert nonce not in dump
    broker_files = b''.join(open(os.path.join(root, f), 'rb').read()
                            for root, _, files in os.walk(os.path.join(m.deployment.dir, 'broker')) for f in files)
    for secret in secrets:
        assert secret[:64] not in broker_files
    assert not os.listdir(os.path.join(m.deployment.dir, 'node0', 'runs'))  # no stray share copies


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


def test_node_killed_mid_clearing_fails_the_round_then_reruns_to_the_same_result(market):
    m = market(participants=6, node_env={1: node_fault_env('stall', 1, 120)})
    m.open()
    m.submit_individually(m.participants)
    m.client('round', 'close', '--round', 'r1')
    time.sleep(2)  # node 1 is now stuck inside its MPC run
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
    address = BrokerClient(m.broker, m.keys).status('r1').node_addresses[index]
    return market_pb2_grpc.NodeStub(secure_channel(address, credentials, f'node{index}'))


def test_rejections_by_running_nodes_and_broker(market, tmp_path):
    m = market(participants=4)
    m.open(gate_in=4)
    # Orders for a slot outside the round: one-line input error, exit 2, nothing sent.
    bad = str(tmp_path / 'bad.csv')
    write_orders(bad, [('p00', 9, 'buy', 5, '0.15')])
    proc = m.client('submit', '--orders', bad, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(f'error: {bad}:2: slot:'), proc.stderr
    # Only the broker may close a round at a node; only an operator may open one at the broker.
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 0).CloseRound(market_pb2.RoundRef(round_id='r1'), timeout=10)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    proc = m.client('round', 'open', '--round', 'r2', '--slots', '0', '--market', m.market, '--client', 'submitter',
                    check=False)
    assert proc.returncode == 1 and 'PERMISSION_DENIED' in proc.stderr
    # A client whose certificate is from another CA is refused by the TLS handshake.
    other = str(tmp_path / 'other')
    keys.create_ca(other)
    keys.create_client(other, 'submitter')
    os.replace(os.path.join(other, 'ca', 'ca.pem'), os.path.join(other, 'ca', 'ours.pem'))
    with open(os.path.join(m.keys, 'ca', 'ca.pem'), 'rb') as src, open(os.path.join(other, 'ca', 'ca.pem'), 'wb') as dst:
        dst.write(src.read())  # trusts our servers, but presents a foreign client certificate
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 0, keys_dir=other).RoundStatus(market_pb2.RoundRef(round_id='r1'), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # Late orders: after gate closure every node refuses, nothing is stored.
    time.sleep(4.5)
    proc = m.client('submit', '--round', 'r1', '--orders', m.participant_orders('p01'), check=False)
    assert proc.returncode == 1 and ('not open' in proc.stderr or 'closed for submissions' in proc.stderr)
    m.close_and_wait()
    state = BrokerClient(m.broker, m.keys).status('r1')
    assert state.accepted == 0
    # A participant cannot fetch another's results: the request must be signed by its own key.
    from mpc_market.net.messages import results_request_bytes
    from mpc_market.net.store import now_ms
    key = keys.load_participant_key(m.keys, 'p00')
    stamp = now_ms()
    nonce = os.urandom(16).hex()
    request = market_pb2.ResultsRequest(round_id='r1', participant='p01', unix_ms=stamp, node_index=1, nonce=nonce,
                                        signature=key.sign(results_request_bytes('r1', 'p01', 1, nonce, stamp)))
    with pytest.raises(grpc.RpcError) as err:
        _node_stub(m, 1).FetchResults(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _netns_available():
    if os.geteuid() != 0:
        return 'needs root for ip netns'
    probe = subprocess.run(['ip', 'netns', 'add', 'mm-probe'], capture_output=True, text=True)
    if probe.returncode != 0:
        return f'cannot create network namespaces: {probe.stderr.strip()}'
    subprocess.run(['ip', 'netns', 'del', 'mm-probe'], capture_output=True)
    return None


NETNS_SCRIPT = os.path.join(os.path.dirname(__file__), '..', 'parties', 'netns.sh')


def test_end_to_end_with_nodes_in_separate_network_namespaces(market):
    reason = _netns_available()
    if reason:
        pytest.skip(reason)
    subprocess.run(['bash', NETNS_SCRIPT, 'up', '3'], check=True, capture_output=True, text=True)
    try:
        m = market(participants=6, netns=True)
        m.open()
        m.submit_individually(m.participants)
        m.close_and_wait()
        m.check_results()
        m.stop()
    finally:
        subprocess.run(['bash', NETNS_SCRIPT, 'down', '3'], capture_output=True, text=True)


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
