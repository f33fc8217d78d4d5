"""Operators' seams: /metrics of a real deployment (counters move, no identity or round id in any
label), a taken port is an "address already in use" error (no SO_REUSEPORT sharing), and the
daemons' log lines (ISO 8601 UTC, one line per event, JSON lines)."""

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import urllib.request

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from mpc_market.common import logs
from mpc_market.net import metrics, metrics_endpoint, server, tls
from mpc_market.net.config import load_node_config
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.net.store import Store
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import REPO, Market, cli

ROUND = 'metricsround7'
DAY = '2026-12-01'


def scrape(address):
    """{(name, labels as sorted tuple): value} of one GET /metrics, parsed by prometheus_client."""
    with urllib.request.urlopen(f'http://{address}/metrics', timeout=10) as reply:
        assert reply.headers['Content-Type'].startswith('text/plain')
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0)


def leaks(samples, secrets):
    """Label values and metric names that contain a participant name or the round id."""
    return [(name, labels) for name, labels in samples
            if any(secret in name or any(secret in v for _, v in labels) for secret in secrets)]


@pytest.mark.slow
@pytest.mark.deployment
def test_metrics_of_a_deployment_move_during_a_round_and_name_nobody(tmp_path):
    market = Market(tmp_path, participants=6, seed=5, metrics=True)
    try:
        addresses = market.deployment.metrics
        assert sorted(addresses) == ['broker', 'node0', 'node1', 'node2']
        secrets = [ROUND, *market.participants]
        market.client('round', 'open', '--round', ROUND, '--slots', '0-3', '--market', market.market,
                      '--gate-closure-in', 120, '--readings-deadline-in', 600, '--day', DAY)
        market.submit_individually(market.participants, ROUND)
        # refusals by reason: a garbage submission, round status asked by a participant's client
        node0_address = load_node_config(market.deployment.node_config(0)).listen
        channel = tls.secure_channel(node0_address, tls.client_credentials(market.keys, 'clients', 'submitter'),
                                     'node0')
        stub = market_pb2_grpc.NodeStub(channel)
        with pytest.raises(grpc.RpcError) as garbage:
            stub.SubmitOrder(market_pb2.Submission(round_id=ROUND, participant=market.participants[0],
                                                   envelope=b'{', node_index=0), timeout=10)
        assert garbage.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as status:
            stub.RoundStatus(market_pb2.RoundRef(round_id=ROUND), timeout=10)
        assert status.value.code() == grpc.StatusCode.PERMISSION_DENIED
        channel.close()

        during = {name: scrape(address) for name, address in addresses.items()}   # the round is open
        node0 = during['node0']
        assert value(node0, 'mpc_market_daemon', role='node') == 1
        assert value(node0, 'mpc_market_submissions_accepted_total', kind='order') == len(market.participants)
        assert value(node0, 'mpc_market_submissions_refused_total', kind='order', reason='INVALID_ARGUMENT') == 1
        assert value(node0, 'mpc_market_rpc_requests_total', method='RoundStatus', code='PERMISSION_DENIED') == 1
        submits = [v for (name, labels), v in node0.items() if name == 'mpc_market_rpc_requests_total'
                   and dict(labels)['method'] in ('SubmitOrder', 'SubmitBatch') and dict(labels)['code'] == 'OK']
        assert sum(submits) >= 1, node0
        assert value(node0, 'mpc_market_rounds', phase='open') == 1
        assert value(during['broker'], 'mpc_market_rounds', phase='open') == 1
        assert value(during['broker'], 'mpc_market_daemon', role='broker') == 1
        assert value(during['broker'], 'mpc_market_rpc_requests_total', method='OpenRound', code='OK') == 1

        market.close_and_wait(ROUND)
        readings = tmp_path / 'readings.csv'
        planned = {(r[0], r[1]): (r[3] if r[2] == 'buy' else -r[3]) for r in market.rows}
        readings.write_text('participant,slot,net_wh\n' + ''.join(
            f'{p},{s},{planned.get((p, s), 0) + 7}\n' for p in market.participants for s in range(4)))
        upload = market.client('meter', 'submit', '--readings', readings, '--orders', market.orders, '--day', DAY)
        assert f'{len(market.participants)} accepted by every node' in upload.stdout, upload.stdout
        market.client('round', 'close', '--round', ROUND)  # the readings deadline: now
        settled = market.client('round', 'settled', '--round', ROUND, '--wait', 120, check=False)
        assert settled.returncode == 0, settled.stdout + settled.stderr

        after = {name: scrape(address) for name, address in addresses.items()}
        for i in range(3):
            node = after[f'node{i}']
            assert value(node, 'mpc_market_mpc_sessions_total', phase='clearing', outcome='done') == 1
            assert value(node, 'mpc_market_mpc_sessions_total', phase='settlement', outcome='done') == 1
            assert value(node, 'mpc_market_mpc_session_seconds_count', phase='clearing') == 1
            assert value(node, 'mpc_market_mpc_session_seconds_sum', phase='settlement') > 0
            assert value(node, 'mpc_market_mpc_session_sent_bytes_sum', phase='clearing') > 0
            assert value(node, 'mpc_market_submissions_accepted_total', kind='readings') == len(market.participants)
            assert value(node, 'mpc_market_rounds', phase='settled') == 1 and value(node, 'mpc_market_rounds',
                                                                                   phase='open') == 0
            assert value(node, 'mpc_market_store_bytes') > 0
            assert value(node, 'mpc_market_peak_rss_bytes', process='self') > 1e6
            assert value(node, 'mpc_market_peak_rss_bytes', process='children') > 1e6   # the MPyC sessions
        assert value(after['broker'], 'mpc_market_rounds', phase='settled') == 1
        for name, samples in {**{f'{k} during': v for k, v in during.items()}, **after}.items():
            assert not leaks(samples, secrets), (name, leaks(samples, secrets))
        # the logs of the same run: ISO 8601 UTC times, the round's events in one line each
        with open(os.path.join(market.deployment.dir, 'node0.log')) as f:
            lines = [line for line in f if 'mpc_market.node' in line]
        assert any(f'round {ROUND}: clearing done' in line for line in lines), lines
        for line in lines:
            assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) mpc_market\.node ',
                            line), line
    finally:
        market.stop()


def test_the_metrics_endpoint_serves_get_metrics_only_and_one_process_per_port():
    endpoint = metrics_endpoint.start('127.0.0.1:0')
    try:
        host, port = endpoint.server_address
        assert host == '127.0.0.1' and endpoint.url == f'http://127.0.0.1:{port}/metrics'
        samples = scrape(f'127.0.0.1:{port}')
        assert any(name == 'mpc_market_admission_refusals_total' for name, _ in samples)
        for path, code in (('/', 404), ('/metrics/../x', 404)):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f'http://127.0.0.1:{port}{path}', timeout=10)
            assert refused.value.code == code
        with pytest.raises(urllib.error.HTTPError) as posted:
            urllib.request.urlopen(urllib.request.Request(endpoint.url, data=b'x', method='POST'), timeout=10)
        assert posted.value.code == 405
        with pytest.raises(OSError, match=f'metrics: cannot listen on 127.0.0.1:{port}: address already in use'):
            metrics_endpoint.start(f'127.0.0.1:{port}')
    finally:
        endpoint.shutdown()


def test_labels_are_a_fixed_set():
    with pytest.raises(ValueError):
        metrics.count_submissions('p00', [None], str)
    with pytest.raises(ValueError):
        metrics.count_admission_refusal("rate limit of client certificate 'p00'")
    with pytest.raises(ValueError):
        metrics.record_session('r1', 'done', 1.0)


# -- a taken port ----------------------------------------------------------------------------------
def test_no_grpc_server_shares_its_port():
    """With gRPC's default SO_REUSEPORT a second server binds a taken port; ours refuse it."""
    from concurrent import futures
    first = grpc.server(futures.ThreadPoolExecutor(1), options=server.server_options())
    port = first.add_insecure_port('127.0.0.1:0')
    first.start()
    try:
        second = grpc.server(futures.ThreadPoolExecutor(1), options=server.server_options())
        with pytest.raises(RuntimeError):
            second.add_insecure_port(f'127.0.0.1:{port}')
        with pytest.raises(OSError, match=f'^broker: cannot listen on 127.0.0.1:{port}: address already in use$'):
            server.check_free('broker', f'127.0.0.1:{port}')
    finally:
        first.stop(None)
    held = socket.socket()
    held.bind(('127.0.0.1', 0))
    held.listen()
    with held, pytest.raises(OSError, match='address already in use'):
        server.check_free('node 0', f'localhost:{held.getsockname()[1]}')


def test_no_server_of_the_package_asks_for_so_reuseport():
    """Every gRPC server takes server.server_options(); no asyncio server sets reuse_port."""
    package = os.path.join(REPO, 'mpc_market')
    calls = []
    for root, _, files in os.walk(package):
        for name in files:
            if name.endswith('.py') and not root.endswith('rpc'):
                text = open(os.path.join(root, name)).read()
                calls += [(name, m.group(0)) for m in re.finditer(r'grpc\.(aio\.)?server\([^\n]*', text)]
                assert 'reuse_port=True' not in text and 'SO_REUSEPORT, 1' not in text, name
    assert calls and all('options=server_options()' in call for _, call in calls), calls


def free_run(count):
    """A base port with count free consecutive ports after it."""
    for _ in range(200):
        probe = socket.socket()
        probe.bind(('127.0.0.1', 0))
        base = probe.getsockname()[1]
        probe.close()
        if base + count >= 65000:
            continue
        try:
            for port in range(base, base + count):
                server.check_free('probe', f'127.0.0.1:{port}')
            return base
        except OSError:
            continue
    raise AssertionError('no run of free ports')


@pytest.mark.slow
@pytest.mark.deployment
def test_a_second_deployment_on_taken_ports_is_refused_and_starts_nothing(tmp_path):
    base = free_run(17)
    first = LocalDeployment(str(tmp_path / 'first')).create(base_port=base + 1)
    first.start()
    try:
        again = cli('broker', '--config', first.broker_config)
        assert again.returncode == 1, again.stdout + again.stderr
        assert again.stderr == f'error: broker: cannot listen on 127.0.0.1:{base + 1}: address already in use\n'
        node = cli('node', '--config', first.node_config(0))
        assert node.returncode == 1 and node.stderr == (f'error: node 0: cannot listen on 127.0.0.1:{base + 2}: '
                                                        'address already in use\n'), node.stderr

        def up(directory, port):
            return subprocess.run([sys.executable, '-m', 'mpc_market', 'up', '--dir', str(tmp_path / directory),
                                   '--base-port', str(port)], capture_output=True, text=True, timeout=120)
        second = up('second', base + 1)        # the broker's port is taken: refused before anything is written
        assert second.returncode == 1 and 'nodes running' not in second.stdout, second.stdout + second.stderr
        assert second.stderr == f'error: broker: cannot listen on 127.0.0.1:{base + 1}: address already in use\n'
        assert not (tmp_path / 'second').exists()
        third = up('third', base)              # its broker's port is free, node 0's is the first broker's
        assert third.returncode == 1 and 'nodes running' not in third.stdout, third.stdout + third.stderr
        assert third.stderr.count('\n') == 1 and 'node0 did not start' in third.stderr, third.stderr
        assert 'address already in use' in third.stderr, third.stderr
        server.check_free('third broker', f'127.0.0.1:{base}')   # what it had started is stopped again
        listing = cli('round', 'list', '--broker', first.broker_address, '--keys', first.keys)
        assert listing.returncode == 0, listing.stderr   # the first deployment still answers, alone
    finally:
        first.stop()


# -- log lines -------------------------------------------------------------------------------------
def test_log_lines_are_iso_utc_single_lines_and_json_on_request():
    stream = io.StringIO()
    logs.configure('info', 'text', stream)
    log = logging.getLogger('mpc_market.node')
    try:
        log.debug('not written')
        log.warning('round %s: clearing failed: %s', 'r1', 'node 1 said\nforged line',
                    extra=logs.event('r1', 'clearing'))
        try:
            raise ValueError('boom')
        except ValueError:
            log.exception('round %s: internal error', 'r1')
        text = stream.getvalue().splitlines()
        assert len(text) == 2, text
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING mpc_market\.node round r1: clearing '
                            r'failed: node 1 said\\nforged line', text[0]), text[0]
        assert 'Traceback' in text[1] and 'ValueError: boom' in text[1]

        stream = io.StringIO()
        logs.configure('debug', 'json', stream)
        log.info('round %s: gate closed, clearing (attempt %d)', 'r1', 1, extra=logs.event('r1', 'clearing'))
        entry = json.loads(stream.getvalue())
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', entry['time'])
        assert (entry['level'], entry['logger'], entry['round'], entry['phase']) == (
            'INFO', 'mpc_market.node', 'r1', 'clearing')
        assert entry['message'] == 'round r1: gate closed, clearing (attempt 1)'
        with pytest.raises(ValueError):
            logs.configure('verbose', 'text')
    finally:
        logs.configure()


def test_a_metrics_address_is_validated(tmp_path):
    config = tmp_path / 'node.toml'
    config.write_text('[node]\nindex = 0\nlisten = "127.0.0.1:7101"\ndata_dir = "n"\nkeys = "k"\n'
                      'metrics = "every interface"\n\n[deployment]\n'
                      'nodes = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]\nmpc = ["127.0.0.1:4", "127.0.0.1:5", '
                      '"127.0.0.1:6"]\n')
    bad = cli('node', '--config', config)
    assert bad.returncode == 2 and bad.stderr == (f'error: {config}:6: metrics: expected "host:port", '
                                                  "got 'every interface'\n"), bad.stderr
    flag = cli('broker', '--config', config, '--metrics', ':9300x')
    assert flag.returncode == 2 and 'expected "host:port"' in flag.stderr


# -- the Prometheus and Grafana recipe (parties/grafana) ------------------------------------------
def test_the_grafana_dashboard_queries_metrics_the_daemons_export(tmp_path):
    grafana = os.path.join(REPO, 'parties', 'grafana')
    with open(os.path.join(grafana, 'mpc-market-dashboard.json')) as f:
        dashboard = json.load(f)
    stores = CollectorRegistry()
    store = Store(str(tmp_path / 'node.db'))
    metrics.watch_store(store, rounds=True, registry=stores)
    exported = {m.name for r in (metrics.REGISTRY, stores) for m in r.collect()} | {'up'}
    assert {'mpc_market_rounds', 'mpc_market_store_bytes'} <= exported
    store.close()
    suffixes = ('_total', '_bucket', '_sum', '_count', '_created')
    datasource = open(os.path.join(grafana, 'provisioning', 'datasources', 'prometheus.yml')).read()
    assert dashboard['panels']
    for panel in dashboard['panels']:
        assert panel['datasource']['uid'] in datasource, panel['title']
        for target in panel['targets']:
            names = set(re.findall(r'\b((?:mpc_market|process)_[a-z_]+|up)\b', target['expr']))
            assert names, target['expr']
            for name in names:
                base = next((name[:-len(s)] for s in suffixes if name.endswith(s) and name[:-len(s)] in exported), name)
                assert base in exported, (panel['title'], name)
    # prometheus.yml scrapes what `up --base-port 7300 --metrics` serves
    scraped = re.findall(r'"(127\.0\.0\.1:\d+)"', open(os.path.join(grafana, 'prometheus.yml')).read())
    local = LocalDeployment(str(tmp_path / 'dep')).create(base_port=7300, metrics=True)
    assert set(local.metrics.values()) <= set(scraped)
    compose = open(os.path.join(grafana, 'docker-compose.yml')).read()
    assert './prometheus.yml:' in compose and './mpc-market-dashboard.json:' in compose
