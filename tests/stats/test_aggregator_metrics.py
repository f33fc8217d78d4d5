"""The statistics aggregator's /metrics and JSON log lines, as a process: meter-days accepted and
refused by reason, admission refusals, store size; no meter name in any label."""

import json
import re
import signal
import subprocess
import sys
import time

import grpc
import pytest

from mpc_market.mpc.local import free_ports
from mpc_market.net.tls import client_credentials, secure_channel
from mpc_market.rpc import market_pb2, market_pb2_grpc
from tests.net.test_metrics import leaks, scrape, value
from tests.stats.test_service import DAY, FEEDERS, LATE, deployment, encrypt, fetch  # noqa: F401 - the fixture

from helpers import cli

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def test_aggregator_metrics_count_meter_days_and_name_no_meter(deployment):  # noqa: F811
    root, address, _, proc = deployment
    proc.send_signal(signal.SIGTERM)  # again with metrics and JSON log lines
    proc.wait(30)
    metrics_port, = free_ports(1)
    log_path = root / 'aggregator-json.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([sys.executable, '-m', 'mpc_market', 'stats', 'aggregator', '--config',
                                 str(root / 'aggregator.toml'), '--metrics', f'127.0.0.1:{metrics_port}',
                                 '--log-format', 'json'], stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while 'listening' not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert f'metrics on http://127.0.0.1:{metrics_port}/metrics' in log_path.read_text()
        meters = sorted(m for m in FEEDERS if m != LATE)
        encrypt(root, 'days.jsonl', meters)
        for _ in range(2):  # the second time every meter-day is refused as a replay
            cli('stats', 'submit', '--submissions', root / 'days.jsonl', '--aggregator', address, '--keys',
                root / 'keys', '--batch', '4')
        stub = market_pb2_grpc.StatsAggregatorStub(secure_channel(
            address, client_credentials(str(root / 'keys'), 'clients', 'submitter'), 'aggregator'))
        with pytest.raises(grpc.RpcError):
            stub.SubmitEncryptedDays(market_pb2.EncryptedDayBatch(
                days=[market_pb2.EncryptedDay(meter='a0', day=DAY)] * 257), timeout=10)
        assert fetch(root, address, 'dso', 'bundle').returncode == 0
        samples = scrape(f'127.0.0.1:{metrics_port}')
        assert value(samples, 'mpc_market_daemon', role='aggregator') == 1
        assert value(samples, 'mpc_market_submissions_accepted_total', kind='meter_day') == len(meters)
        assert value(samples, 'mpc_market_submissions_refused_total', kind='meter_day',
                     reason='ALREADY_EXISTS') == len(meters)
        assert value(samples, 'mpc_market_admission_refusals_total', reason='too_many_items') == 1
        assert value(samples, 'mpc_market_rpc_requests_total', method='SubmitEncryptedDays',
                     code='RESOURCE_EXHAUSTED') == 1
        assert value(samples, 'mpc_market_rpc_requests_total', method='FetchAggregates', code='OK') == 1
        assert value(samples, 'mpc_market_store_bytes') > 0
        assert not leaks(samples, sorted(FEEDERS) + [DAY]), leaks(samples, sorted(FEEDERS))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    lines = [line for line in log_path.read_text().splitlines() if line.startswith('{')]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', entry['time']), entry
        assert {'level', 'logger', 'message'} <= set(entry)
