"""Suite `flood`: liveness under a forged-submission flood, broker + 3 node processes over mutual TLS.

Flooder processes, holding a valid client certificate of the deployment (a compromised
representative), send node 0 batches of 256 forged orders (registered participants, canonical
envelopes, bad signatures, full-size packages) as fast as it answers, with many requests in
flight. Meanwhile an honest representative (its own certificate) submits one participant's
order to all three nodes and the broker's certificate asks node 0 for the round status, once
every 0.25 s. Measured: the honest latencies (median, max) against the bar (``bar_s``, 2 s), and
what the flood achieved (requests answered, items checked, requests turned away). exact: every
honest call answered, each within the bar (``python -m benchmarks flood`` exits 1 otherwise).

    python -m benchmarks flood [--seconds 20] [--flooders 2] [--in-flight 32] [--check 2.0] [--no-save]
"""

import json
import multiprocessing
import os
import queue
import statistics
import tempfile
import time

import grpc

from mpc_market.common import keys
from mpc_market.common.keys import load_node_verify_keys
from mpc_market.market.book import Book
from mpc_market.market.config import parse_config
from mpc_market.market.orders import Order
from mpc_market.net import messages
from mpc_market.net.client import BrokerClient
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.net.node_intake import package_values
from mpc_market.net.store import Round, now_ms
from mpc_market.net.submit import NodeEndpoint, Submitter
from mpc_market.net.tls import _read, client_credentials, secure_channel
from mpc_market.rpc import market_pb2, market_pb2_grpc

from .suite import figure

NAME, TITLE = 'flood', 'Honest calls under a forged-submission flood'
COLUMNS = [('flood s', 'seconds'), ('flooders', 'flooders'), ('in flight per flooder', 'in_flight_per_flooder'),
           ('forged items checked', 'flood_items_checked'), ('batches turned away', 'flood_batches_turned_away'),
           ('honest submissions', 'honest_submissions'), ('honest failures', 'honest_failures'),
           ('submit median s', 'submit_median_s'), ('submit max s', 'submit_max_s'),
           ('status median s', 'status_median_s'), ('status max s', 'status_max_s'), ('bar s', 'bar_s'),
           ('within the bar', 'exact')]


def options(group):
    """The flood's own options (each replaces the preset's parameter of its dest)."""
    group.add_argument('--seconds', type=float, help='how long the flood lasts')
    group.add_argument('--flooders', type=int, help='flooder processes')
    group.add_argument('--in-flight', type=int, dest='in_flight', help='forged batches in flight per flooder')
    group.add_argument('--check', type=float, dest='bar_s', metavar='SECONDS',
                       help='the bar: every honest call must answer within this many seconds (default 2.0)')


def complete(row, bar_s):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: the flood's row (seconds: how long the flood lasted).
        bar_s: the bar for every honest call.

    Returns:
        The row with bar_s, exact (no honest failure, every honest call within the bar) and
        bytes_per_node, peak_rss_mb_per_node None (not measured).
    """
    exact = row['honest_failures'] == 0 and max(row['submit_max_s'], row['status_max_s']) <= bar_s
    return dict(row, bar_s=bar_s, exact=exact, bytes_per_node=None, peak_rss_mb_per_node=None)


MARKET = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
PARTICIPANTS = [f'h{i:03d}' for i in range(300)]


def _flood(address, keys_dir, end_unix, in_flight, package_bytes, counts):
    """One flooder process: keep in_flight forged batches outstanding at node 0 until end_unix (wall
    clock, shared with the parent: a flooder slow to start on a loaded machine still stops on time)."""
    credentials = client_credentials(keys_dir, 'clients', 'flooder')
    stub = market_pb2_grpc.NodeStub(secure_channel(address, credentials, 'node0'))
    package = os.urandom(package_bytes)
    hashes = tuple(os.urandom(32).hex() for _ in range(3))
    items = [market_pb2.Submission(
        round_id='r1', participant=p, node_index=0, package=package, signature=os.urandom(64),
        envelope=messages.Envelope('r1', p, os.urandom(16).hex(), hashes, 1, 'order', os.urandom(32).hex())
        .to_json().encode())
        for p in PARTICIPANTS[:256]]
    batch = market_pb2.SubmissionBatch(orders=items)
    answered = refused = 0
    deadline = time.monotonic() + max(0.0, end_unix - time.time())
    pending = []
    while time.monotonic() < deadline:
        while len(pending) < in_flight:
            pending.append(stub.SubmitBatch.future(batch, timeout=max(1.0, deadline - time.monotonic() + 5)))
        call = pending.pop(0)
        try:
            call.result()
            answered += 1
        except grpc.RpcError as exc:
            refused += exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in pending:
        call.cancel()
    counts.put((answered, refused))


def one(seconds, flooders, in_flight, work):
    """The flood against a fresh deployment; the row of what honest calls and the flood achieved."""
    deployment = LocalDeployment(os.path.join(work, 'dep')).create(PARTICIPANTS)
    keys.create_client(deployment.keys, 'flooder')
    keys.create_client(deployment.keys, 'honest')
    deployment.start(timeout=60)
    try:
        operator = BrokerClient(deployment.broker_address, deployment.keys, 'operator')
        state = operator.open('r1', [0], now_ms() + 3_600_000, MARKET)
        addresses = list(state.node_addresses)
        config = parse_config('flood', MARKET)
        round_ = Round('r1', [0], 0, MARKET, 'open', '')
        package_bytes = 16 * package_values(round_, 'order')
        counts = multiprocessing.get_context('spawn').Queue()
        flood_end = time.time() + seconds + 1.0
        procs = [multiprocessing.get_context('spawn').Process(
            target=_flood, args=(addresses[0], deployment.keys, flood_end, in_flight, package_bytes, counts))
            for _ in range(flooders)]
        for proc in procs:
            proc.start()
        time.sleep(1.0)  # the flood is under way
        endpoints = [NodeEndpoint(i, a, k) for i, (a, k) in
                     enumerate(zip(addresses, load_node_verify_keys(deployment.keys, 3), strict=True))]
        honest = Submitter(endpoints, client_credentials(deployment.keys, 'clients', 'honest'), timeout=30,
                           params_sha256={'r1': messages.RoundParams.from_json(state.params).sha256()})
        broker_credentials = grpc.ssl_channel_credentials(_read(deployment.keys, 'ca', 'ca.pem'),
                                                          _read(deployment.keys, 'broker', 'broker.key'),
                                                          _read(deployment.keys, 'broker', 'broker.pem'))
        status_stub = market_pb2_grpc.NodeStub(secure_channel(addresses[0], broker_credentials, 'node0'))
        submit_s, status_s, failures = [], [], []
        end = time.monotonic() + seconds - 2
        k = 0
        while time.monotonic() < end:
            participant = PARTICIPANTS[256 + k % 44]
            k += 1
            book = Book(config, [Order(participant, 0, 'buy', 100 + k, config.price_floor)])
            values = book.encode([0])[0]
            started = time.perf_counter()
            try:
                honest.submit('r1', participant, keys.load_participant_key(deployment.keys, participant), values)
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(str(exc))
            submit_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            try:
                status_stub.RoundStatus(market_pb2.RoundRef(round_id='r1'), timeout=30)
            except grpc.RpcError as exc:
                failures.append(f'status: {exc.code().name}: {exc.details()}')
            status_s.append(time.perf_counter() - started)
            time.sleep(0.25)
        # the flooders end at flood_end; one that hangs (a loaded machine) is stopped, not waited for
        join_by = time.monotonic() + max(0.0, flood_end - time.time()) + 30
        for proc in procs:
            proc.join(max(0.1, join_by - time.monotonic()))
        flood = []
        for _ in procs:
            try:
                flood.append(counts.get(timeout=5))
            except queue.Empty:
                failures.append('a flooder did not report (stopped)')
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        honest.close()
        operator.close()
    finally:
        deployment.stop()
    return {'seconds': seconds, 'flooders': flooders, 'in_flight_per_flooder': in_flight,
            'flood_batches_answered': sum(a for a, _ in flood), 'flood_items_checked': 256 * sum(a for a, _ in flood),
            'flood_batches_turned_away': sum(r for _, r in flood),
            'honest_submissions': len(submit_s), 'honest_failures': len(failures),
            'submit_median_s': round(statistics.median(submit_s), 3), 'submit_max_s': round(max(submit_s), 3),
            'status_median_s': round(statistics.median(status_s), 3), 'status_max_s': round(max(status_s), 3),
            'failures': failures[:3]}


def run(params, seed):
    """One flood of the preset's length."""
    with tempfile.TemporaryDirectory(prefix='mpc-market-flood-') as work:
        row = complete(one(params['seconds'], params['flooders'], params['in_flight'], work), params['bar_s'])
    print(json.dumps(row, indent=1))
    print(f'honest submission to 3 nodes: median {row["submit_median_s"]:.3f} s, max {row["submit_max_s"]:.3f} s; '
          f'status at node 0: median {row["status_median_s"]:.3f} s, max {row["status_max_s"]:.3f} s '
          f'(bar: {params["bar_s"]:g} s); flood: {row["flood_items_checked"]} forged items checked, '
          f'{row["flood_batches_turned_away"]} batches turned away', flush=True)
    return [row], describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return ['seconds: how long the flood lasted; the honest calls run from 1 s after its start until 2 s before '
            'its end.',
            'failures: the first three honest failures, if any.']


def figures(rows, directory):
    fig = figure()
    axis = fig.subplots()
    row = rows[0]
    names = ['submit to 3 nodes\nmedian', 'submit\nmax', 'status at node 0\nmedian', 'status\nmax']
    values = [row['submit_median_s'], row['submit_max_s'], row['status_median_s'], row['status_max_s']]
    axis.bar(names, values, color=['#4c72b0', '#4c72b0', '#55a868', '#55a868'])
    for i, v in enumerate(values):
        axis.annotate(f'{v:.3f} s', (i, v), ha='center', va='bottom', fontsize=8)
    axis.axhline(row['bar_s'], color='#c44e52', linestyle='--', label=f'bar: {row["bar_s"]:g} s')
    axis.set_ylim(0, max(row['bar_s'], *values) * 1.1)
    axis.set_ylabel('honest call latency (s)')
    axis.set_title(f'{row["honest_submissions"]} honest submissions during a flood of {row["seconds"]:g} s: '
                   f'{row["flooders"]} flooders x {row["in_flight_per_flooder"]} batches of 256 forged orders in '
                   f'flight\n{row["flood_items_checked"]:,} forged items checked, '
                   f'{row["flood_batches_turned_away"]:,} batches turned away', fontsize=9)
    axis.legend(fontsize=8, loc='center right')
    axis.grid(True, axis='y', alpha=0.3)
    fig.tight_layout()
    path = os.path.join(directory, 'flood.png')
    fig.savefig(path)
    return [('honest latencies under the flood', path)]
