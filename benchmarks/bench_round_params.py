"""Suite `round_params`: what signed round parameters cost (issue 21): round open latency and order intake.

1. In-process, same run: an order envelope sealed, parsed back and checked the way a node does,
   bound to the round parameters' hash (today) and without that field (the v1 envelope, rebuilt
   here for comparison only); a node signing a round's parameters; a client verifying m = 3..7
   nodes' signatures (trusted_round's cost per command).
2. A deployment (broker + 3 nodes over mutual TLS on this machine): OpenRound latency at the
   broker (every node signs, the broker verifies all signatures and stores them) and orders
   accepted by every node per second for N participants from one `submit` (the client verifies
   the round first).
Every row is a measure with its value and unit; exact: its checks passed (a check that fails
raises). Bytes and memory per node are not measured here.
"""

import hashlib
import json
import os
import statistics
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric import ed25519

from mpc_market.common.signing import canonical_bytes
from mpc_market.net import messages

from .suite import figure, profile_day

NAME, TITLE = 'round_params', 'What signed round parameters cost: envelopes, signatures, round open, intake'
COLUMNS = [('measure', 'measure'), ('value', 'value'), ('unit', 'unit'), ('checked', 'exact')]
SECONDS = {'us per envelope': 1e-6, 'us': 1e-6, 'ms': 1e-3}  # units that are times


def complete(row):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: {measure, value, unit}.

    Returns:
        The row with seconds (the value in seconds where it is a time, else None), exact (True:
        every measure's checks passed, or the run stopped), bytes_per_node and
        peak_rss_mb_per_node None (not measured).
    """
    scale = SECONDS.get(row['unit'])
    return dict(row, seconds=None if scale is None else round(row['value'] * scale, 7), exact=True,
                bytes_per_node=None, peak_rss_mb_per_node=None)


MARKET = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'


def per_call(fn, n):
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def envelope_costs(n):
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


def signature_costs(n):
    """Microseconds for a node to sign a round's parameters and for a client to verify m of them."""
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


def deployment_costs(participants, rounds, seed=1, day=None):
    """Round open latency and orders/s of one submit over a local 3-node deployment."""
    from mpc_market.market.generate import write_community
    from mpc_market.net.client import BrokerClient, submit_orders
    from mpc_market.net.localdeploy import LocalDeployment
    from mpc_market.net.store import now_ms
    rows = []
    with tempfile.TemporaryDirectory() as work:
        orders, config_path, _, _ = write_community(os.path.join(work, 'c'), participants=participants, slots=4,
                                                    seed=seed, profile_day=day)
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


def run(params, seed):
    """The in-process costs, then the deployment's."""
    rows = (envelope_costs(params['envelopes']) + signature_costs(params['signatures'])
            + deployment_costs(params['participants'], params['rounds'], seed, profile_day(params)))
    rows = [complete(r) for r in rows]
    for row in rows:
        print(f'{row["measure"]:<75} {row["value"]:>10} {row["unit"]}')
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'in-process figures: the mean of {params["envelopes"]:,} envelopes and {params["signatures"]:,} '
            'signatures or verifications, after a warm-up; one process, one core.']


def figures(rows, directory):
    timed = [r for r in rows if r['unit'] in ('us per envelope', 'us')]
    fig = figure()
    axis = fig.subplots()
    axis.barh(range(len(timed)), [r['value'] for r in timed], color='#4c72b0')
    axis.set_yticks(range(len(timed)), [r['measure'] for r in timed], fontsize=8)
    axis.invert_yaxis()
    for i, r in enumerate(timed):
        axis.annotate(f' {r["value"]:g} µs', (r['value'], i), va='center', fontsize=8)
    axis.set_xlabel('microseconds per operation, one core')
    axis.set_xlim(0, max(r['value'] for r in timed) * 1.2)
    over = '\n'.join(f'{r["measure"]}: {r["value"]:g} {r["unit"]}' for r in rows if r not in timed
                     and r['unit'] != 'bytes')
    fig.text(0.02, 0.02, 'Over a deployment (broker + 3 nodes, TLS):\n' + over, fontsize=7, va='bottom')
    axis.set_title('In-process costs of signed round parameters', fontsize=10)
    axis.grid(True, axis='x', alpha=0.3)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the deployment's figures below the axes
    path = os.path.join(directory, 'round_params.png')
    fig.savefig(path)
    return [('in-process costs of signed round parameters', path)]
