"""The scenarios suite's leakage scan: clean on an honest run (an energy round, then a flexibility
round on the same deployment), and it fails on every kind of leak injected into an actor's files,
of either round (a test that the scanner can fail)."""

import os
import sqlite3
import sys

import pytest

from helpers import REPO

sys.path.insert(0, REPO)  # benchmarks/ is a package of the checkout, not installed
from benchmarks.bench_scenarios import run_scenario  # noqa: E402
from benchmarks.leakage import scan  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def _append(path, data):
    with open(path, 'ab') as f:
        f.write(data)


def _flex_package(node_dir, participant):
    """The first bytes of the share package of the participant's offers that this node holds (round f1)."""
    db = sqlite3.connect(f'file:{os.path.join(node_dir, "node.db")}?mode=ro', uri=True)
    try:
        (package,) = db.execute("SELECT package FROM submissions WHERE round_id = 'f1' AND participant = ?",
                                (participant,)).fetchone()
    finally:
        db.close()
    return bytes(package[:32])


def test_the_scan_is_clean_on_s3_and_catches_each_injected_leak(tmp_path):
    params = {'participants': 6, 'slots': 2, 'representatives': 2}
    actors, secrets, (seconds, sent, peak), exact = run_scenario('S3', params, 5, str(tmp_path))
    assert exact and seconds > 0 and sent > 0 and peak > 0
    assert all(not r['leaks'] for r in scan(actors, secrets))
    by_name = {a.name: a for a in actors}
    broker, rep0, operator = by_name['broker-org'], by_name['rep0'], by_name['operator-2']
    # the instrumentation records what a server received: node 2's own share packages arrived there
    with open(next(p for p in operator.paths if p.endswith('node2.received')), 'rb') as f:
        received = f.read()
    assert any(fp in received for (p, n), prints in secrets.shares.items() if n == 2 for fp in prints)
    # the flexibility round ran: its offers and activations are secrets the scan knows, its feeder map public
    assert secrets.offers and secrets.activations and secrets.public_names
    # a victim off the public feeder map (its name is as private as in the energy round), with an offer
    victim = next(p for p in sorted(rep0.participants) if p not in secrets.public_names and p in secrets.offers)
    outsider = next(p for p in sorted(by_name['rep1'].participants) if p in secrets.activations)
    broker_log = next(p for p in broker.paths if p.endswith('broker.log'))
    node0_dir = next(p for p in rep0.paths if p.endswith('node0'))
    node2_dir = next(p for p in operator.paths if p.endswith('node2'))
    injections = [
        # a broker logging an order it should never see
        (broker_log, secrets.orders[victim][0], 'broker-org', {f'identity {victim}', f'order of {victim}'}),
        # node 2 keeping a copy of node 0's share package of a participant
        (os.path.join(next(p for p in operator.paths if p.endswith('node2')), 'debug.bin'),
         secrets.shares[(victim, 0)][0], 'operator-2',
         {f'share {victim}@node0'}),
        # a representative holding another representative's client's order (rep0 runs node 0, so
        # the name alone it may know: nodes know who submitted)
        (os.path.join(rep0.paths[0], 'gossip.csv'), secrets.orders[outsider][0], 'rep0', {f'order of {outsider}'}),
        # the flexibility round: a broker logging an offer
        (broker_log, secrets.offers[victim][0], 'broker-org', {f'identity {victim}', f'offer of {victim}'}),
        # node 2 keeping a copy of node 0's share package of a participant's offers
        (os.path.join(node2_dir, 'debug.bin'), _flex_package(node0_dir, victim), 'operator-2',
         {f'share {victim}@node0'}),
        # a node operator writing a participant's activation and payment (a row of its activations.csv)
        (os.path.join(node2_dir, 'node2-debug.csv'), secrets.activations[outsider][0], 'operator-2',
         {f'activation of {outsider}'}),
        # a representative holding another representative's client's activation
        (os.path.join(rep0.paths[0], 'gossip.csv'), secrets.activations[outsider][0], 'rep0',
         {f'activation of {outsider}'}),
    ]
    for path, secret, actor, expected in injections:
        _append(path, b'\n' + secret + b'\n')
        leaks = {r['actor']: set(r['leaks']) for r in scan(actors, secrets)}
        assert leaks[actor] == expected, (actor, leaks)
        assert all(not found for name, found in leaks.items() if name != actor)
        with open(path, 'rb') as f:
            data = f.read()
        with open(path, 'wb') as f:
            f.write(data.replace(b'\n' + secret + b'\n', b''))
    assert all(not r['leaks'] for r in scan(actors, secrets))
