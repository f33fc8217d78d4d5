"""A lying broker (finding 1 of the third review), as real processes over TLS: a proxy that holds
the broker's own key and certificate forwards every call to the real broker and edits its replies
(drops nodes, lists none, names an unpinned address, edits the market text, the mechanism or the
signed parameters, replays another round's state, forges public results). Every client command
run as its own process against the proxy must exit non-zero with one line naming the lie, and no
node may hold a package of it. Through the same proxy passing replies on unchanged, the same
commands succeed."""

import dataclasses
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import pytest

from mpc_market.net.client import BrokerClient
from mpc_market.net.messages import RoundParams
from mpc_market.net.tls import server_credentials, server_options
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import REPO, CliProcesses, Market

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

DAY = '2026-12-01'
OLD, LIVE = 'old', 'live'  # a cleared round taking readings, and a round open for orders
SUBMITTER = 'p00'


class LyingBroker(market_pb2_grpc.BrokerServicer):
    """The broker's servicer, forwarding to the real broker and editing its answers per self.mode."""

    def __init__(self, real, keys_dir, unpinned, mode='honest'):
        self.real = BrokerClient(real, keys_dir, 'operator')
        self.mode = mode
        self.unpinned = unpinned

    def _edit(self, state, requested=None):
        """The lie of self.mode told about one RoundState (requested: the round id asked for)."""
        mode, state = self.mode, market_pb2.RoundState.FromString(state.SerializeToString())
        if mode == 'drop':
            del state.node_addresses[2:]
        elif mode == 'none':
            del state.node_addresses[:]
        elif mode == 'unpinned':
            state.node_addresses[0] = self.unpinned
        elif mode == 'market':  # same layout, floor and ceiling 0.010 higher
            state.market_toml = state.market_toml.replace('price_floor = 0.10', 'price_floor = 0.11') \
                .replace('price_ceiling = 0.20', 'price_ceiling = 0.21')
        elif mode == 'mechanism':
            state.market_toml += 'mechanism = "sdr"\n'
        elif mode == 'params':  # the gate closure a day later, the nodes' signatures kept
            params = RoundParams.from_json(state.params)
            state.params = dataclasses.replace(params, gate_closure_ms=params.gate_closure_ms + 86_400_000).to_json()
        elif mode == 'replay':  # the other round's state, told as open for orders
            other = self.real.status(LIVE if state.round_id == OLD else OLD)
            other.state = market_pb2.RoundState.OPEN
            other.gate_closure_unix_ms = state.gate_closure_unix_ms or int(time.time() * 1000) + 60_000
            if requested is None:  # a listing: relabelled as the round (phase, day) it stands for
                other.round_id, other.state, other.settlement, other.day = \
                    state.round_id, state.state, state.settlement, state.day
            state = other
        return state

    def _forward(self, call, context):
        try:
            return call()
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())

    def RoundStatus(self, request, context):
        return self._edit(self._forward(lambda: self.real.status(request.round_id), context), request.round_id)

    def ListRounds(self, request, context):
        rounds = self._forward(self.real.rounds, context)
        return market_pb2.RoundList(rounds=[self._edit(r) for r in rounds])

    def PublicResults(self, request, context):
        result = self._forward(lambda: self.real.public(request.round_id), context)
        if self.mode in ('none', 'unsigned-public', 'forged-public'):
            body = json.loads(result.body)
            for slot in body['slots']:  # every price of the round 0.01 higher
                for field in ('price', 'buy_price', 'sell_price'):
                    if slot.get(field):
                        slot[field] = f'{float(slot[field]) + 0.01:.2f}'
            forged = json.dumps(body, sort_keys=True, separators=(',', ':'))
            assert forged != result.body
            result = market_pb2.PublicResultSet(round_id=result.round_id, slots=result.slots, body=forged,
                                                signatures=[] if self.mode != 'forged-public' else result.signatures)
        return result

    def SettlementResults(self, request, context):
        return self._forward(lambda: self.real.settlement(request.round_id), context)

    def OpenRound(self, request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, 'proxy: clients only')

    def CloseRound(self, request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, 'proxy: clients only')


class Listener:
    """A TCP port that counts connections: the unpinned 'node' a lying broker names."""

    def __init__(self):
        self.sock = socket.create_server(('127.0.0.1', 0))
        self.address = f'127.0.0.1:{self.sock.getsockname()[1]}'
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def write_readings(path, rows):
    with open(path, 'w') as f:
        f.write('participant,slot,net_wh\n' + ''.join(f'{p},{s},{n}\n' for p, s, n in rows))


class Proxies:
    """One proxy server per lie (and 'honest'), so that the commands of every lie can run at once."""

    def __init__(self, market, unpinned):
        self.market, self.unpinned = market, unpinned
        self.servers, self.addresses = [], {}

    def address(self, mode):
        """'localhost:PORT' of the proxy telling lie mode (started at the first call)."""
        if mode not in self.addresses:
            proxy = LyingBroker(self.market.broker, self.market.keys, self.unpinned, mode)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=server_options())
            market_pb2_grpc.add_BrokerServicer_to_server(proxy, server)
            port = server.add_secure_port('127.0.0.1:0', server_credentials(self.market.keys, 'broker', 'broker'))
            server.start()
            self.servers.append(server)
            self.addresses[mode] = f'localhost:{port}'
        return self.addresses[mode]

    def stop(self):
        for server in self.servers:
            server.stop(None)


@pytest.fixture(scope='module')
def lying(tmp_path_factory):
    """One deployment (round OLD cleared and taking readings, round LIVE open) behind the proxies."""
    tmp = tmp_path_factory.mktemp('lying')
    market = Market(tmp, participants=4, seed=5)
    proxies = None
    try:
        opened = time.monotonic()
        market.client('round', 'open', '--round', OLD, '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 3, '--readings-deadline-in', 600, '--day', DAY)
        market.submit_individually(market.participants, OLD)
        market.close_and_wait(OLD)
        market.client('round', 'open', '--round', LIVE, '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 600)
        time.sleep(max(0.0, opened + 4 - time.monotonic()))  # OLD's signed gate closure has passed
        listener = Listener()
        proxies = Proxies(market, listener.address)
        readings = str(tmp / 'readings.csv')
        write_readings(readings, [(p, s, 100) for p in market.participants for s in range(4)])
        yield market, proxies, listener, readings
    finally:
        if proxies is not None:
            proxies.stop()
        market.stop()


def run(market, broker, *args):
    """mpc-market ARGS against broker, as its own process."""
    return subprocess.run([sys.executable, '-m', 'mpc_market', *args, '--broker', broker, '--keys', market.keys],
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture(scope='module')
def forks():
    processes = CliProcesses()
    yield processes
    processes.stop()


def run_all(forks, market, runs):
    """{key: mpc-market ARGS against broker} of runs {key: (broker, args)}, each its own process (a fork of
    a server that imported the command line once, four at a time: ~50 processes' imports were most of
    this test's time; run() covers the `python -m mpc_market` entry itself)."""
    return forks.run({key: [*args, '--broker', broker, '--keys', market.keys] for key, (broker, args) in runs.items()},
                     REPO)


def held(market, round_id, kind):
    """Packages of kind each node holds for round_id (read-only, beside the running node: WAL readers)."""
    counts = []
    for i in range(3):
        db = sqlite3.connect(f'file:{os.path.join(market.deployment.dir, f"node{i}", "node.db")}?mode=ro', uri=True)
        try:
            counts.append(db.execute('SELECT COUNT(*) FROM submissions WHERE round_id = ? AND kind = ?',
                                     (round_id, kind)).fetchone()[0])
        finally:
            db.close()
    return counts


def commands(market, tmp):
    """name -> the arguments of every client command a lie is told to."""
    return {
        'submit': ('submit', '--round', LIVE, '--orders', market.participant_orders(SUBMITTER)),
        'submit-latest': ('submit', '--orders', market.participant_orders(SUBMITTER)),
        'results-public': ('results', '--public', '--round', OLD, '--out', tmp / 'public'),
        'results-participant': ('results', '--participant', SUBMITTER, '--round', OLD, '--orders', market.orders,
                                '--out', tmp / 'own'),
        'meter-submit': ('meter', 'submit', '--readings', str(tmp / 'readings.csv'), '--orders', market.orders,
                         '--day', DAY),
    }


# mode -> {command: the words of its one-line refusal}; public-result lies only reach results --public
LIES = {
    'drop': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                          'names 2 nodes; the deployment manifest has m = 3'),
    'none': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                          'names 0 nodes; the deployment manifest has m = 3'),
    'unpinned': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                              'the deployment manifest pins'),
    'market': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                            'the market text is not the one the nodes signed'),
    'mechanism': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                               'the market text is not the one the nodes signed'),
    'params': dict.fromkeys(('submit', 'submit-latest', 'results-public', 'results-participant', 'meter-submit'),
                            'bad signature of node 0 on the round parameters'),
    'replay': {'submit': f"the broker answered with round '{OLD}' for round '{LIVE}'",
               'submit-latest': 'its gate closure (signed by the nodes) has passed',
               'results-public': f"the broker answered with round '{LIVE}' for round '{OLD}'",
               'results-participant': f"the broker answered with round '{LIVE}' for round '{OLD}'",
               'meter-submit': f"the nodes signed the parameters of round '{LIVE}'"},
    'unsigned-public': {'results-public': 'node 0 has not signed the public results'},
    'forged-public': {'results-public': 'bad signature of node 0 on the public results'},
}


def refused(proc, words):
    """Why proc is not a one-line refusal naming words ('' when it is)."""
    lines = proc.stderr.strip().splitlines()
    if proc.returncode == 0 or 'Traceback' in proc.stderr or len(lines) != 1 or words not in lines[0]:
        return f'exit {proc.returncode}, stdout {proc.stdout[-300:]!r}, stderr {proc.stderr[-600:]!r}'
    if 'signed by all' in proc.stdout:
        return f'printed {proc.stdout[-300:]!r}'
    return ''


def test_every_client_command_refuses_a_lying_broker_and_shares_nothing(lying, forks):
    """Every lie of LIES to every client command it reaches, each command its own process (all at
    once, each lie told by its own proxy); then the honest control through a proxy, and a settled
    round's bill, honest and lied about.

    One test function: the deployment is shared and its node counts are cumulative, so the cases
    must not be spread over xdist workers."""
    market, proxies, listener, _ = lying
    every = commands(market, market.dir)
    failures = []
    lied = run_all(forks, market, {(mode, name): (proxies.address(mode), every[name])
                            for mode, lies in LIES.items() for name in lies})
    for (mode, name), proc in lied.items():
        if why := refused(proc, LIES[mode][name]):
            failures.append(f'{mode} / {name}: {why}')
    # the counts only grow, so none now means none after any lie
    if held(market, LIVE, 'order') != [0, 0, 0] or held(market, OLD, 'readings') != [0, 0, 0]:
        failures.append(f'nodes hold packages: orders {held(market, LIVE, "order")}, '
                        f'readings {held(market, OLD, "readings")}')
    assert listener.connections == 0  # the unpinned address was never contacted
    assert not failures, '\n'.join(failures)

    # the control: the proxy passing every reply on unchanged, the same commands succeed, as
    # `python -m mpc_market` processes
    broker = proxies.address('honest')
    for name in ('submit', 'results-public', 'results-participant', 'meter-submit'):
        proc = run(market, broker, *every[name])
        assert proc.returncode == 0, (name, proc.stdout, proc.stderr)
        if name == 'results-public':
            assert 'public results signed by all 3 nodes' in proc.stdout
    assert held(market, LIVE, 'order') == [1, 1, 1]
    assert held(market, OLD, 'readings') == [4, 4, 4]

    # settle OLD, then the bill: honest through the proxy, refused under each lie about the round
    market.client('round', 'close', '--round', OLD)
    settled = market.client('round', 'settled', '--round', OLD, '--wait', 120, check=False)
    assert settled.returncode == 0 and 'settled' in settled.stdout, settled.stdout + settled.stderr
    bill = ('results', '--participant', SUBMITTER, '--bill', '--from', DAY, '--to', DAY, '--orders', market.orders,
            '--out', market.dir / 'bill')
    proc = run(market, broker, *bill)
    assert proc.returncode == 0 and os.path.exists(market.dir / 'bill' / 'bills.csv'), proc.stdout + proc.stderr
    bills = run_all(forks, market, {mode: (proxies.address(mode), bill) for mode in (
        'drop', 'none', 'unpinned', 'market', 'mechanism', 'params', 'replay')})
    for mode, proc in bills.items():
        if why := refused(proc, LIES[mode]['meter-submit']):
            failures.append(f'{mode} / results --bill: {why}')
    assert not failures, '\n'.join(failures)
