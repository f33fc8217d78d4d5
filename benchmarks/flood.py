"""Liveness under a forged-submission flood: broker + 3 node processes over mutual TLS.

Flooder processes, holding a valid client certificate of the deployment (a compromised
representative), send node 0 batches of 256 forged orders (registered participants, canonical
envelopes, bad signatures, full-size packages) as fast as it answers, with many requests in
flight. Meanwhile an honest representative (its own certificate) submits one participant's
order to all three nodes and the broker's certificate asks node 0 for the round status, once
every 0.25 s. Printed and saved: the honest latencies (median, max) against the bar of 2 s,
and what the flood achieved (requests answered, items checked, requests turned away).

    python benchmarks/flood.py [--seconds 20] [--flooders 2] [--in-flight 32] [--check 2.0]
"""

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402
from common import machine, save_rows  # noqa: E402

from mpc_market.common import keys  # noqa: E402
from mpc_market.common.keys import load_node_verify_keys  # noqa: E402
from mpc_market.market.book import Book  # noqa: E402
from mpc_market.market.config import parse_config
from mpc_market.market.orders import Order  # noqa: E402
from mpc_market.net import messages
from mpc_market.net.client import BrokerClient  # noqa: E402
from mpc_market.net.localdeploy import LocalDeployment  # noqa: E402
from mpc_market.net.node_intake import package_values  # noqa: E402
from mpc_market.net.store import Round, now_ms  # noqa: E402
from mpc_market.net.submit import NodeEndpoint, Submitter  # noqa: E402
from mpc_market.net.tls import _read, client_credentials, secure_channel  # noqa: E402
from mpc_market.rpc import market_pb2, market_pb2_grpc  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
MARKET = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
PARTICIPANTS = [f'h{i:03d}' for i in range(300)]


def _flood(address, keys_dir, seconds, in_flight, package_bytes, counts):
    """One flooder process: keep in_flight forged batches outstanding at node 0 for seconds."""
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
    deadline = time.monotonic() + seconds
    pending = []
    while time.monotonic() < deadline:
        while len(pending) < in_flight:
            pending.append(stub.SubmitBatch.future(batch, timeout=30))
        call = pending.pop(0)
        try:
            call.result()
            answered += 1
        except grpc.RpcError as exc:
            refused += exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    for call in pending:
        call.cancel()
    counts.put((answered, refused))


def run(seconds, flooders, in_flight, work):
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
        procs = [multiprocessing.get_context('spawn').Process(
            target=_flood, args=(addresses[0], deployment.keys, seconds, in_flight, package_bytes, counts))
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
        for proc in procs:
            proc.join(seconds + 60)
        flood = [counts.get(timeout=10) for _ in procs]
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--seconds', type=float, default=20)
    parser.add_argument('--flooders', type=int, default=2)
    parser.add_argument('--in-flight', type=int, default=32)
    parser.add_argument('--check', type=float, help='exit 1 unless every honest call answered within this many s')
    parser.add_argument('--no-save', action='store_true')
    args = parser.parse_args()
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["cpu"]}, Python {info["python"]}', flush=True)
    work = tempfile.mkdtemp(prefix='mpc-market-flood-')
    try:
        row = run(args.seconds, args.flooders, args.in_flight, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(row, indent=1))
    print(f'honest submission to 3 nodes: median {row["submit_median_s"]:.3f} s, max {row["submit_max_s"]:.3f} s; '
          f'status at node 0: median {row["status_median_s"]:.3f} s, max {row["status_max_s"]:.3f} s (bar: 2 s); '
          f'flood: {row["flood_items_checked"]} forged items checked, {row["flood_batches_turned_away"]} batches '
          'turned away', flush=True)
    if not args.no_save:
        save_rows(RESULTS, 'flood', info, [row])
    if args.check is not None:
        ok = row['honest_failures'] == 0 and max(row['submit_max_s'], row['status_max_s']) <= args.check
        return 0 if ok else 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
