"""Shared fixtures of the whole suite, and the order the xdist workers run it in."""

import itertools
import os
from concurrent import futures

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from mpc_market.common import keys
from mpc_market.mpc.supervisor import with_single_threaded_blas
from mpc_market.net.node_intake import NodeService, RateLimiter, broker_only
from mpc_market.net.store import Store, now_ms
from mpc_market.net.submit import Submitter, load_endpoints, tls_credentials
from mpc_market.rpc import market_pb2_grpc

from helpers import TOML, Market, SharedDeployment, SignedParams, node_fault_env, read_bytes

# Every process the suite starts (xdist workers, CLI commands, servers) inherits this: OpenBLAS's pool
# costs CPU at each numpy import and the suite's BLAS products are small (as for the party processes:
# mpc_market.mpc.supervisor.with_single_threaded_blas).
os.environ.update(with_single_threaded_blas(os.environ))

# The longest tests, with rough seconds on the 2-core machine (pytest --durations). Run first and spread
# over the workers: one of them starting last would run on alone and stretch the suite's wall time.
# A test missing here only runs in collection order; an id that no longer exists is ignored.
LONG_TESTS = {
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[scenarios]': 28,
    'tests/net/test_market_day.py::test_two_calendar_days_settle_to_the_local_bills_and_the_dso_sums': 39,
    'tests/security/test_flooding.py::test_honest_calls_answer_within_2_s_under_a_forged_flood': 30,
    'tests/net/test_operator_page.py::test_the_console_shows_settled_double_auction_sdr_and_zoned_rounds_in_a_'
    'browser': 30,
    'tests/market/test_grid_check.py::test_the_congestion_loop_relieves_a_midday_pv_overload': 25,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[deployment]': 18,
    'tests/net/test_settlement_rounds.py::test_settlement_survives_a_killed_node_and_broker_and_missing_readings': 16,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[scaling]': 15,
    'tests/test_docs.py::test_deployment_quickstart_runs': 15,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[latency]': 14,
    'tests/net/test_calendar.py::test_calendar_rounds_open_close_and_clear_across_a_broker_restart': 13,
    'tests/test_leakage.py::test_the_scan_is_clean_on_s3_and_catches_each_injected_leak': 11,
    'tests/net/test_results_and_meter.py::test_meter_destinations_bills_and_several_participants_like_the_local_'
    'commands': 10,
    'tests/market/test_simbench_grid.py::test_the_docs_simbench_section_runs': 10,
    'tests/market/test_simbench_grid.py::test_the_written_community_clears_and_its_feeder_statistics_are_the_grid_'
    's_sums': 10,
    'tests/net/test_zoned_deployment.py::test_a_generated_zoned_market_deploys_clears_and_settles_like_the_local_'
    'settle': 9,
    'tests/net/test_deployment.py::test_broker_killed_and_restarted_mid_round': 9,
    'tests/mpc/test_negative_prices.py::test_random_negative_zoned_markets_clear_and_settle_exactly': 9,
    'tests/mpc/test_flex_mpc.py::test_in_process_equals_the_reference': 9,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[peers]': 9,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[mechanisms]': 9,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[round_params]': 8,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[stats]': 8,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[mitigations]': 8,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[settlement]': 8,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[flex]': 8,
    'tests/test_bench.py::test_the_suite_runs_quick_and_its_results_regenerate_the_report[rules]': 7,
    'tests/mpc/test_negative_prices.py::test_random_negative_markets_clear_and_settle_exactly': 8,
    'tests/mpc/test_flex_delivery.py::test_in_process_equals_the_reference': 7,
    'tests/net/test_flex_settlement.py::test_a_day_with_a_dso_flexibility_round_settles_to_the_local_bills': 11,
}


def spread_long_tests(items, workers):
    """The items in the order that gives each worker its share of LONG_TESTS first.

    xdist's worksteal scheduler hands worker k the k-th of ``workers`` consecutive chunks of the
    collection (sizes n // workers, the remainder to the last) and later moves tests from the end of
    a busy worker's queue. So each chunk starts with long tests, dealt longest first to the chunk
    with the fewest seconds so far, and is filled up with the other tests in collection order.

    Args:
        items: the collected test items, after deselection.
        workers: the number of xdist workers.

    Returns:
        The same items, reordered.
    """
    sizes, left = [], len(items)
    for k in range(workers):  # as WorkStealingScheduling.check_schedule splits its first batch
        sizes.append(left // (workers - k))
        left -= sizes[-1]
    long = sorted((i for i in items if i.nodeid in LONG_TESTS), key=lambda i: -LONG_TESTS[i.nodeid])
    chunks, seconds = [[] for _ in sizes], [0] * workers
    for item in long:
        k = min((k for k in range(workers) if len(chunks[k]) < sizes[k]), key=lambda k: seconds[k])
        chunks[k].append(item)
        seconds[k] += LONG_TESTS[item.nodeid]
    rest = (i for i in items if i.nodeid not in LONG_TESTS)
    for chunk, size in zip(chunks, sizes, strict=True):
        chunk.extend(itertools.islice(rest, size - len(chunk)))
    return [i for chunk in chunks for i in chunk]


def pytest_configure(config):
    """The quick loop (-m "not slow", on the controller and every xdist worker) runs fewer examples
    of each property test (helpers.run_examples); the full suite all of them."""
    if (config.option.markexpr or '').replace(' ', '') == 'notslow':
        os.environ['MPC_MARKET_QUICK_LOOP'] = '1'


@pytest.hookimpl(trylast=True)  # after -m/-k have deselected: the chunks are of what runs
def pytest_collection_modifyitems(config, items):
    """On xdist workers (each collects; all must agree on the order), the long tests first. The chunks
    are worksteal's (pyproject's --dist); under another --dist the long tests still start early."""
    workers = getattr(config, 'workerinput', {}).get('workercount', 1)
    if workers > 1 and len(items) > workers:
        items[:] = spread_long_tests(items, workers)


@pytest.fixture
def node_fault(monkeypatch):
    """Set a node fault for every process the test starts: ``node_fault('fail', 1)``."""
    def set_fault(kind, index, seconds=None):
        for key, value in node_fault_env(kind, index, seconds).items():
            monkeypatch.setenv(key, value)
    return set_fault


@pytest.fixture
def market(tmp_path):
    markets = []

    def start(**kwargs):
        markets.append(Market(tmp_path, **kwargs))
        return markets[-1]
    yield start
    for m in markets:
        m.stop()


@pytest.fixture(scope='session')
def shared_deployment(tmp_path_factory):
    """This worker's one running deployment for the tests that only need one (see SharedDeployment)."""
    shared = SharedDeployment(str(tmp_path_factory.mktemp('shared')))
    yield shared
    shared.stop()


@pytest.fixture
def shared_market(tmp_path, shared_deployment):
    """``shared_market(round_ids, **Market kwargs)``: a Market whose rounds run on the shared deployment."""
    def start(round_ids, **kwargs):
        return Market(tmp_path, shared=shared_deployment, round_ids=round_ids, **kwargs)
    return start


@pytest.fixture
def node_services(tmp_path):
    """Three node submission services over mutual TLS (no broker, no clearing), as ``serve`` builds them."""
    d = str(tmp_path / 'keys')
    keys.create_ca(d)
    for i in range(3):
        keys.create_node(d, i)
    keys.create_client(d, 'submitter')
    keys.create_participants(d, ['alice', 'bob', 'carol'])
    registry = keys.load_registry(os.path.join(d, 'registry.json'))
    servers, stores, addresses = [], [], []
    gate_closure = now_ms() + 60_000  # one round specification for every node, as the broker sends it
    for i in range(3):
        store = Store(str(tmp_path / f'node{i}.db'))
        store.open_round('r1', [0, 1], gate_closure, TOML)
        signing = serialization.load_pem_private_key(read_bytes(d, 'nodes', f'node{i}.sign.key'), None)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[broker_only(i)])  # as serve()
        market_pb2_grpc.add_NodeServicer_to_server(
            NodeService(i, store, registry, signing, limiter=RateLimiter(rate=1, burst=8)), server)
        credentials = grpc.ssl_server_credentials([(read_bytes(d, 'nodes', f'node{i}.key'),
                                                    read_bytes(d, 'nodes', f'node{i}.pem'))],
                                                  root_certificates=read_bytes(d, 'ca', 'ca.pem'),
                                                  require_client_auth=True)
        port = server.add_secure_port('127.0.0.1:0', credentials)
        server.start()
        servers.append(server)
        stores.append(store)
        addresses.append(f'localhost:{port}')
    submitter = Submitter(load_endpoints(d, addresses), tls_credentials(d), params_sha256=SignedParams(stores[0]))
    yield d, submitter, stores, servers, addresses
    submitter.close()
    for server in servers:
        server.stop(None)
