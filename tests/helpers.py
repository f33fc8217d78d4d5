"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import contextlib
import csv
import io
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from mpc_market.cli.main import main as cli_main
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.net.client import BrokerClient, submit_orders
from mpc_market.net.localdeploy import LocalDeployment

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
FAULTS = os.path.join(TESTS, 'faults')

if REPO not in sys.path:  # benchmarks/ is a package of the checkout, not installed
    sys.path.insert(0, REPO)
from benchmarks.forks import CliProcesses, CliResult  # noqa: E402,F401 - the tests' command line as processes


def node_fault_env(kind, index, seconds=None):
    """Environment for processes whose MPC party ``index`` should ``stall`` (for seconds) or ``fail``
    (see tests/faults/sitecustomize.py; production code has no fault hook)."""
    fault = f'{kind}:{index}' + (f':{seconds}' if seconds is not None else '')
    path = os.pathsep.join(p for p in (FAULTS, os.environ.get('PYTHONPATH', '')) if p)
    return {'PYTHONPATH': path, 'MPC_MARKET_TEST_FAULT': fault}


# -- the command line ---------------------------------------------------------------------------
def cli(*args, check=False, cwd=None):
    """Run ``mpc-market ARGS`` in this process (``cli.main``), capturing its output. An uncaught
    exception escapes to the test: a traceback is a failure, not an exit status."""
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli_main([str(a) for a in args])
            except SystemExit as exc:  # argparse: usage errors and --help
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        os.chdir(previous)
    result = CliResult(code or 0, out.getvalue(), err.getvalue())
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


# -- a deployment of node and broker processes (the ``market`` fixture) ---------------------------
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


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def wait_for(condition, timeout, what):
    """condition()'s first truthy value, polled every 0.05 s; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f'timed out waiting for {what}')


NODE_OPTIONS = {'connect_timeout_s': 20, 'clearing_timeout_s': 120}
SHARED_PARTICIPANTS = [f'p{i:02d}' for i in range(10)] + ['P2', 'P3', 'P4', 'P5']  # random markets, seed cases


class SharedDeployment:
    """One broker + 3 nodes (SHARED_PARTICIPANTS registered) for the tests that only need a running
    deployment: none kills, restarts or faults a process; each runs its own rounds (ids unique here).
    The daemons start under a loose umask (0o022): their state must be private whatever the caller's."""

    def __init__(self, directory):
        self.dir, self.deployment, self.started, self.round_ids = directory, None, 0, set()

    def running(self, round_ids):
        """The deployment (started anew if a process of it has ended), reserving round_ids."""
        assert not self.round_ids & set(round_ids), f'round ids used by another test: {self.round_ids & set(round_ids)}'
        self.round_ids |= set(round_ids)
        if self.deployment is None or any(p.poll() is not None for p in self.deployment.procs.values()):
            self.stop()
            self.started += 1
            old = os.umask(0o022)
            try:
                self.deployment = LocalDeployment(os.path.join(self.dir, f'dep{self.started}')).create(
                    SHARED_PARTICIPANTS, node_options=NODE_OPTIONS).start()
            finally:
                os.umask(old)
        return self.deployment

    def stop(self):
        if self.deployment is not None:
            self.deployment.stop()
            self.deployment = None


class Market:
    """A random market, its plaintext reference, and a running deployment (its own, or shared)."""

    def __init__(self, tmp_path, participants=10, seed=7, netns=None, node_env=None, rows=None, market=MARKET,
                 broker_http=None, extra_participants=(), metrics=False, shared=None, round_ids=('r1',)):
        """netns: None, or (prefix, subnet) of namespaces made by parties/netns.sh for this run.
        rows and market: given orders and market TOML instead of a random market.
        shared: a SharedDeployment to run on instead of a deployment of its own; round_ids: the rounds
        the test uses (the first is self.round, the methods' default)."""
        self.dir = tmp_path
        self.round = round_ids[0]
        self.rows = rows or random_orders(random.Random(seed), participants)
        self.participants = sorted({r[0] for r in self.rows})
        self.orders = str(tmp_path / 'orders.csv')
        self.market = str(tmp_path / 'market.toml')
        write_orders(self.orders, self.rows)
        with open(self.market, 'w') as f:
            f.write(market)
        cli('clear', '--engine', 'plain', '--orders', self.orders, '--config', self.market, '--out', tmp_path / 'plain',
            '--quiet', check=True)
        self.plain = read_rows(tmp_path / 'plain' / 'participants.csv')
        self.owned = shared is None
        if shared is not None:
            assert not (netns or node_env or broker_http or extra_participants or metrics), 'needs its own deployment'
            assert set(self.participants) <= set(SHARED_PARTICIPANTS), self.participants
            self.deployment = shared.running(round_ids)
        else:
            prefix, subnet = netns or (None, None)
            self.deployment = LocalDeployment(str(tmp_path / 'dep'), netns=bool(netns), netns_prefix=prefix,
                                              subnet=subnet).create(
                self.participants + list(extra_participants), node_options=NODE_OPTIONS, metrics=metrics)
            for i in range(3):
                self.deployment.start_node(i, (node_env or {}).get(i))
            self.deployment.start_broker(broker_http)
            self.deployment.wait_ready()
        self.broker = self.deployment.broker_address
        self.keys = self.deployment.keys

    def client(self, *args, check=True):
        return cli(*args, '--broker', self.broker, '--keys', self.keys, check=check)

    def open(self, round_id=None, gate_in=120):
        self.client('round', 'open', '--round', round_id or self.round, '--slots', '0-3', '--market', self.market,
                    '--gate-closure-in', gate_in)

    def participant_orders(self, participant):
        path = str(self.dir / f'orders-{participant}.csv')
        write_orders(path, [r for r in self.rows if r[0] == participant])
        return path

    def submit_individually(self, participants, round_id=None):
        """Every participant submits its own orders file over its own connections, concurrently
        (what ``mpc-market submit`` does, in threads of this process: the suite's CPU goes to the nodes)."""
        round_id = round_id or self.round

        def submit(participant):
            broker = BrokerClient(self.broker, self.keys, 'submitter')
            try:
                return submit_orders(self.participant_orders(participant), broker, self.keys, round_id)
            finally:
                broker.close()
        with ThreadPoolExecutor(len(participants)) as pool:
            for p, report in zip(participants, pool.map(submit, participants), strict=True):
                assert report.accepted == [p] and not report.failed, (p, report.failed)

    def close_and_wait(self, round_id=None, timeout=120):
        proc = self.client('round', 'close', '--round', round_id or self.round, '--wait', timeout, check=False)
        assert proc.returncode == 0 and (': cleared;' in proc.stdout or ': readings;' in proc.stdout), \
            proc.stdout + proc.stderr

    def check_results(self, round_id=None):
        """Public results and every participant's own rows equal the plaintext reference's."""
        round_id = round_id or self.round
        out = self.dir / f'results-{round_id}'
        self.client('results', '--public', '--round', round_id, '--out', out)
        with open(out / 'public.csv') as f, open(self.dir / 'plain' / 'public.csv') as g:
            assert f.read() == g.read()
        for p in self.participants:
            self.client('results', '--participant', p, '--round', round_id, '--orders', self.orders, '--out', out)
            assert read_rows(out / f'{p}.csv') == [r for r in self.plain if r['participant'] == p], p

    def stop(self):
        if self.owned:
            self.deployment.stop()


# -- node submission services in this process (the ``node_services`` fixture) ---------------------
TOML = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'
CONFIG = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'))


def assert_lies_refused(deployment, round_id, field, lies, why):
    """A broker showing round_id's state with field set to each lie (instead of what the nodes
    signed) is refused by a client holding only its manifest; returns the true TrustedRound."""
    import pytest

    from mpc_market.net.client import client_manifest
    from mpc_market.net.trusted import UntrustedRound, trusted_round
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    try:
        state = broker.status(round_id)
    finally:
        broker.close()
    manifest = client_manifest(deployment.keys)
    for lie in lies:
        forged = type(state)()
        forged.CopyFrom(state)
        setattr(forged, field, lie)
        with pytest.raises(UntrustedRound, match=why):
            trusted_round(forged, manifest, round_id)
    return trusted_round(state, manifest, round_id)


def read_bytes(*parts):
    with open(os.path.join(*parts), 'rb') as f:
        return f.read()


def order_values(orders, participant, round_slots=(0, 1)):
    """The participant's vectors for every slot of the round (zero orders where it has none)."""
    book = Book(CONFIG, [Order(p, s, side, e, Decimal(lim)) for p, s, side, e, lim in orders],
                extra_pairs=[(participant, s) for s in round_slots])
    return book.encode([book.participant_index[participant]])[0]


class SignedParams(dict):
    """round id -> RoundParams.sha256() as the nodes of a test hold the round (a Submitter's params_sha256)."""

    def __init__(self, store, nodes=3):
        super().__init__()
        self.store, self.nodes = store, nodes

    def __missing__(self, round_id):
        from mpc_market.net import messages
        return messages.params_of_state(self.store.round(round_id), self.nodes).sha256()


def sealed(key, round_id, participant, packages, store, **kwargs):
    """messages.seal for the round as store holds it (3 nodes)."""
    from mpc_market.net import messages
    return messages.seal(key, round_id, participant, packages, params_sha256=SignedParams(store)[round_id], **kwargs)


# -- simbench grids (the optional extra [grid]) ---------------------------------------------------
_SIMBENCH_NETS = {}  # code -> the net simbench extracted, loaded once per test process; never handed out


def load_simbench_once(monkeypatch):
    """Patch ``mpc_market.market.grid.load_net`` for one test: each simbench grid is extracted from
    simbench's CSV tables once per test process (seconds each time) and every caller gets a deep copy,
    as fresh as a new load. A code simbench refuses still raises from the real loader."""
    import copy

    from mpc_market.market import grid
    real = grid.load_net

    def load_net(code):
        if code not in _SIMBENCH_NETS:
            _SIMBENCH_NETS[code] = real(code)
        return copy.deepcopy(_SIMBENCH_NETS[code])
    monkeypatch.setattr(grid, 'load_net', load_net)


# -- property tests -----------------------------------------------------------------------------
QUICK_LOOP_SHARE = 10   # the quick loop runs a tenth of each property test's examples


def run_examples(examples):
    """Hypothesis examples for a property test: all of them in the full suite (CI), a tenth (at least
    3) in the quick loop, ``pytest -m "not slow"`` (conftest sets MPC_MARKET_QUICK_LOOP): the same
    properties on fewer random markets before each commit, every example before a merge."""
    if os.environ.get('MPC_MARKET_QUICK_LOOP') == '1':
        return max(3, examples // QUICK_LOOP_SHARE)
    return examples
