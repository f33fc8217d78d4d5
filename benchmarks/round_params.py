"""What signed round parameters cost (issue 21): round open latency and order intake.

1. In-process, same run: an order envelope sealed, parsed back and checked the way a node does,
   bound to the round parameters' hash (today) and without that field (the v1 envelope, rebuilt
   here for comparison only); a node signing a round's parameters; a client verifying m = 3..7
   nodes' signatures (trusted_round's cost per command).
2. A deployment (broker + 3 nodes over mutual TLS on this machine): OpenRound latency at the
   broker (every node signs, the broker verifies all signatures and stores them) and orders
   accepted by every node per second for N participants from one `submit` (the client verifies
   the round first).

    python benchmarks/round_params.py [--participants 2000] [--rounds 20]
"""

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, save_rows  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from mpc_market.common.signing import canonical_bytes  # noqa: E402
from mpc_market.net import messages  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')
MARKET = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'


def per_call(fn, n):
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def envelope_costs(n=20_000):
    """Seconds per envelope (seal + parse + check) with and without the parameters' hash."""
    key = ed25519.Ed25519PrivateKey.generate()
    registry = {'p1': key.public_key()}
    params = messages.RoundParams.of('r1', [0, 1, 2, 3], MARKET, 10**12, 0, 0, '', 3)
    packages = [os.urandom(640) for _ in range(3)]

    def bound():
        envelope, signature = messages.seal(key, 'r1', 'p1', packages, params_sha256=params.sha256())
        parsed = messages.Envelope.from_json(envelope.to_json())
        messages.check(parsed, signature, registry, params, 0, packages[0], set())

    def unbound():  # the v1 envelope: the same fields without params_sha256, the same work otherwise
        fields = {'nonce': os.urandom(16).hex(), 'package_hashes': [hashlib.sha256(p).hexdigest() for p in packages],
                  'participant': 'p1', 'round_id': 'r1', 'seq': time.time_ns()}
        signed = canonical_bytes(b'mpc-market/order-envelope/v1\n', fields)
        signature = key.sign(signed)
        import json
        parsed = json.loads(signed[len(b'mpc-market/order-envelope/v1\n'):])
        registry['p1'].verify(signature, signed)
        assert hashlib.sha256(packages[0]).hexdigest() == parsed['package_hashes'][0]
    rows = []
    for name, fn in (('envelope without parameters hash (v1)', unbound), ('envelope bound to parameters (v2)', bound)):
        per_call(fn, 500)  # warm up
        rows.append({'measure': name, 'value': round(per_call(fn, n) * 1e6, 2), 'unit': 'us per envelope'})
    v1 = len(canonical_bytes(b'', {'nonce': '0' * 32, 'package_hashes': ['0' * 64] * 3, 'participant': 'p1',
                                   'round_id': 'r1', 'seq': 1}))
    envelope, _ = messages.seal(key, 'r1', 'p1', packages, params_sha256=params.sha256(), seq=1)
    rows.append({'measure': 'envelope bytes added', 'value': len(envelope.to_json()) - v1, 'unit': 'bytes'})
    return rows


def signature_costs(n=2_000):
    rows = []
    node_keys = [ed25519.Ed25519PrivateKey.generate() for _ in range(7)]
    params = messages.RoundParams.of('r1', range(96), MARKET, 10**12, 0, 0, '2026-12-02', 3)
    rows.append({'measure': 'a node signs round parameters (96 slots)',
                 'value': round(per_call(lambda: node_keys[0].sign(params.canonical()), n) * 1e6, 1),
                 'unit': 'us'})
    for m in (3, 5, 7):
        signatures = {i: k.sign(params.canonical()) for i, k in enumerate(node_keys[:m])}
        public = [k.public_key() for k in node_keys[:m]]
        rows.append({'measure': f'a client verifies {m} nodes\' signatures',
                     'value': round(per_call(lambda signatures=signatures, public=public: messages.verify_public(
                         params.to_json(), signatures, public, messages.ROUND_PARAMS_DOMAIN), n) * 1e6, 1),
                     'unit': 'us'})
    return rows


def deployment_costs(participants, rounds):
    """Round open latency and orders/s of one submit over a local 3-node deployment."""
    from mpc_market.market.generate import write_community
    from mpc_market.net.client import BrokerClient, submit_orders
    from mpc_market.net.localdeploy import LocalDeployment
    from mpc_market.net.store import now_ms
    rows = []
    with tempfile.TemporaryDirectory() as work:
        orders, config_path, _, _ = write_community(os.path.join(work, 'c'), participants=participants, slots=4, seed=1)
        with open(orders) as f:
            lines = [line.split(',') for line in f.read().splitlines()[1:]]
        names = sorted({line[0] for line in lines})
        slots = sorted({int(line[1]) for line in lines})  # generate picks the day's slots
        with open(config_path) as f:
            market = f.read()
        deployment = LocalDeployment(os.path.join(work, 'd')).create(participants=names)
        deployment.start(timeout=60)
        try:
            operator = BrokerClient(deployment.broker_address, deployment.keys, 'operator')
            latencies = []
            for k in range(rounds):
                started = time.perf_counter()
                operator.open(f'open{k}', slots, now_ms() + 3_600_000, market)
                latencies.append(time.perf_counter() - started)
            rows.append({'measure': f'round open at the broker (3 nodes sign, median of {rounds})',
                         'value': round(statistics.median(latencies) * 1000, 1), 'unit': 'ms'})
            operator.open('orders', slots, now_ms() + 3_600_000, market)
            submitter = BrokerClient(deployment.broker_address, deployment.keys)
            report = submit_orders(orders, submitter, deployment.keys, 'orders', batch=256)
            assert not report.failed, report.failed
            rows.append({'measure': f'orders accepted by every node ({participants} participants x 4 slots, '
                                    'one submit)', 'value': round(len(report.accepted) / report.seconds), 'unit': '/s'})
        finally:
            deployment.stop()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--participants', type=int, default=2000)
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--out', default=RESULTS)
    args = parser.parse_args(argv)
    info = machine()
    rows = envelope_costs() + signature_costs() + deployment_costs(args.participants, args.rounds)
    for row in rows:
        print(f'{row["measure"]:<75} {row["value"]:>10} {row["unit"]}')
    save_rows(args.out, 'round-params', info, rows)
    print(f'machine: {info}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
