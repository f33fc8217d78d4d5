"""The MPC engine against the plaintext reference: the arithmetic with one party in the test process
(random markets, edge cases, ties, chunks), and with real node processes over TLS on 127.0.0.1 what
only several parties show (3, 7 nodes, malicious shares, crashes, peers, a node missing a package)."""

import random
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc import field as ff
from mpc_market.mpc.inprocess import clear_in_process
from mpc_market.mpc.local import clear_mpc, clear_peers

from helpers import cli, read_rows, run_examples
from malicious import tamper_clients

CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'))
SMALL = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 50000)  # 11 levels, slack bits


def book_of(orders, config=CONFIG):
    return Book(config, [Order(p, s, side, e, Decimal(str(lim))) for p, s, side, e, lim in orders])


# the arithmetic with one party in this process (fast), and the same with three node processes
ENGINES = [pytest.param('in-process', id='in-process'), pytest.param('processes', marks=pytest.mark.slow)]


def assert_same(book, engine='processes', **kwargs):
    plain = clear_plain(book)
    secure = clear_in_process(book, **kwargs) if engine == 'in-process' else clear_mpc(book, timeout=300, **kwargs)
    assert secure.slots == plain.slots
    assert secure.rows == plain.rows
    assert secure.excluded == []
    return secure


order_strategy = st.tuples(
    st.integers(0, 11), st.integers(0, 2), st.sampled_from(['buy', 'sell']),
    st.one_of(st.integers(1, 65535), st.sampled_from([1, 65535])),
    st.decimals(Decimal('0.030'), Decimal('0.160'), places=4))


@settings(max_examples=run_examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(order_strategy, min_size=1, max_size=30), min_size=3, max_size=4))
def test_random_markets_agree_exactly(markets):
    """Several independent random markets in one MPC run: market j trades in slots 3j..3j+2
    with participants of its own, and slots clear independently; one party in this process (the
    three-process runs of the edge cases, 7 nodes and chunks below cover the parties' arithmetic)."""
    seen, orders = set(), []
    for j, raw in enumerate(markets):
        for p, s, side, e, lim in raw:
            if (j, p, s) not in seen:
                seen.add((j, p, s))
                orders.append((f'm{j}p{p}', 3 * j + s, side, e, lim))
    assert_same(book_of(orders), 'in-process')


@pytest.mark.parametrize('engine', ENGINES)
def test_edge_cases_in_one_run(engine):
    orders = [
        ('only', 0, 'buy', 100, 0.1),                                          # slot 0: one participant
        ('s1', 1, 'sell', 500, 0.05), ('s2', 1, 'sell', 700, 0.06),            # slot 1: empty buy side
        ('b1', 2, 'buy', 65535, 0.139), ('b2', 2, 'buy', 65535, 0.139),        # slot 2: maximum quantities
        ('b3', 2, 'buy', 65535, 0.2), ('s1', 2, 'sell', 65535, 0.0), ('s2', 2, 'sell', 1, 0.047),
        ('b1', 3, 'buy', 10, 0.05), ('s1', 3, 'sell', 10, 0.12),                # slot 3: prices do not cross
        ('b1', 4, 'buy', 7, 0.1), ('b2', 4, 'buy', 7, 0.1), ('b3', 4, 'buy', 7, 0.1),  # slot 4: remainder
        ('s1', 4, 'sell', 10, 0.05),
        ('b1', 5, 'buy', 100, 0.08), ('s1', 5, 'sell', 100, 0.08),             # slot 5: exact balance
        ('b1', 6, 'buy', 100, 0.2), ('s1', 6, 'sell', 100, 0.2),               # slot 6: untradeable both
    ]
    result = assert_same(book_of(orders), engine)
    by_slot = {s.slot: s for s in result.slots}
    assert by_slot[0].traded_wh == 0 and by_slot[1].traded_wh == 0 and by_slot[3].traded_wh == 0
    assert by_slot[4].residual_wh == 1 and by_slot[5].traded_wh == 100


@pytest.mark.parametrize('engine', ENGINES)
def test_ties_between_candidates(engine):
    orders = [('s1', 0, 'sell', 50, 0.11), ('s2', 0, 'sell', 50, 0.12),
              ('b1', 0, 'buy', 50, 0.11), ('b2', 0, 'buy', 50, 0.12)]
    assert_same(book_of(orders, SMALL), engine)


@pytest.mark.slow
@pytest.mark.parametrize('nodes', [7])  # 5 nodes: tests/mpc/test_settlement.py clears and settles with 5
def test_more_nodes(nodes):
    rng = random.Random(nodes)
    orders = [(f'p{i}', rng.randrange(2), rng.choice(['buy', 'sell']), rng.randint(1, 3000),
               round(rng.uniform(0.08, 0.22), 2)) for i in range(25)]
    assert_same(book_of(orders, SMALL), nodes=nodes)  # 11 levels: the party count is what is tested


@pytest.mark.parametrize('engine', ENGINES)
def test_chunked_streaming_matches(engine):
    rng = random.Random(9)
    orders = [(f'p{i:03d}', s, rng.choice(['buy', 'sell']), rng.randint(1, 9000), round(rng.uniform(0.04, 0.15), 3))
              for i in range(120) for s in range(2) if rng.random() < 0.7]
    assert_same(book_of(orders), engine, chunk=50)


def _add_to_shares(block, rows_cols, delta):
    """Add a field constant to shares (4, n, S, W) at (row, slot, column) positions."""
    for r, s, c in rows_cols:
        value = int(ff.to_ints(block[:, r, s, c]))
        block[:, r, s, c] = ff.from_ints(np.array((value + delta) % ff.MODULUS, dtype=object))
    return block


@pytest.mark.slow
def test_malicious_orders_are_excluded_and_the_rest_clear(monkeypatch, node_fault):
    node_fault('check-floors', 0)  # and no cheat reaches a floor (test-only check in the nodes)
    rng = random.Random(4)
    honest = [(f'h{i}', 0, rng.choice(['buy', 'sell']), rng.randint(1, 4000), round(rng.uniform(0.1, 0.2), 2))
              for i in range(12)]
    cheats = ['x_twohot', 'x_weighted', 'x_oversize', 'x_nonbit', 'x_half', 'x_negative', 'x_inconsistent']
    orders = honest + [(c, 0, 'sell', 1000, 0.10) for c in cheats]
    book = book_of(orders, SMALL)
    layout = book.layout
    index = {name: book.participant_index[name] for name in cheats}
    k = layout.levels

    def tamper(node, participants, data):
        local = {name: i - participants.start for name, i in index.items() if i in participants}
        if node is None:  # the cheating clients' own vectors, before sharing
            if 'x_twohot' in local:
                data[local['x_twohot'], 0, k + 3] = 1
            if 'x_weighted' in local:
                r = local['x_weighted']
                data[r, 0, layout.weighted.start + 1] = data[r, 0, layout.weighted.start]
                data[r, 0, layout.weighted.start] = 0
            if 'x_oversize' in local:
                r, energy = local['x_oversize'], 60000
                data[r, 0, layout.weighted.start] = energy
                data[r, 0, layout.bits] = [(energy >> i) & 1 for i in range(layout.energy_bits)]
                data[r, 0, layout.slack] = 0
            if 'x_nonbit' in local:
                r = local['x_nonbit']
                data[r, 0, layout.bits.start] = 2 + data[r, 0, layout.bits.start] - 1
                data[r, 0, layout.weighted.start] += 1
            return data
        half = (ff.MODULUS + 1) // 2
        if 'x_half' in local:  # two entries of 1/2: sums to one, not bits
            r = local['x_half']
            _add_to_shares(data, [(r, 0, 0)], half - 1)
            _add_to_shares(data, [(r, 0, 1)], half)
        if 'x_negative' in local:  # sells -200 Wh
            r = local['x_negative']
            _add_to_shares(data, [(r, 0, layout.weighted.start)], -1200)
        if 'x_inconsistent' in local and node == 2:  # shares not on one line
            _add_to_shares(data, [(local['x_inconsistent'], 0, 5)], 1)
        return data

    tamper_clients(monkeypatch, book, tamper)
    secure = clear_mpc(book, timeout=300)
    assert secure.excluded == sorted(cheats)
    plain = clear_plain(book_of(honest, SMALL))
    assert secure.slots == plain.slots
    honest_rows = [r for r in secure.rows if r.participant.startswith('h')]
    assert honest_rows == plain.rows
    assert all(r.status == 'excluded' and r.matched_wh == 0 for r in secure.rows if r.participant in cheats)


@pytest.mark.slow
def test_peers_mode_every_prosumer_runs_a_node():
    orders = [('alice', 0, 'sell', 1200, 0.06), ('bob', 0, 'buy', 800, 0.12), ('carol', 0, 'buy', 900, 0.10),
              ('dave', 0, 'sell', 300, 0.09), ('alice', 1, 'buy', 100, 0.13), ('bob', 1, 'sell', 50, 0.05)]
    book = book_of(orders)
    plain = clear_plain(book)
    peers = clear_peers(book, timeout=300)
    assert peers.slots == plain.slots and peers.rows == plain.rows
    assert peers.stats['nodes'] == 4


@pytest.mark.slow
def test_cli_clear_mpc_equals_plain_on_generated_community(tmp_path):
    def run(*args):
        return cli(*args, check=True)
    run('generate', '--participants', '40', '--slots', '4', '--seed', '7', '--out', str(tmp_path))
    common = ['--orders', str(tmp_path / 'orders.csv'), '--config', str(tmp_path / 'market.toml')]
    run('clear', *common, '--out', str(tmp_path / 'mpc'), '--engine', 'mpc')
    run('clear', *common, '--out', str(tmp_path / 'plain'), '--engine', 'plain')
    for name in ('public.csv', 'participants.csv'):
        assert (tmp_path / 'mpc' / name).read_text() == (tmp_path / 'plain' / name).read_text()
    traded = [int(r['traded_wh']) for r in read_rows(tmp_path / 'mpc' / 'public.csv')]
    assert len(traded) == 4 and all(t > 0 for t in traded)  # midday slots of the community: every one trades


@pytest.mark.slow
def test_a_crashed_node_fails_the_run_instead_of_hanging(node_fault):
    from mpc_market.mpc.local import EngineError
    node_fault('fail', 1)
    book = book_of([('a', 0, 'sell', 10, 0.05), ('b', 0, 'buy', 10, 0.1)])
    # node 1 dies; whichever survivor notices first (node 1 gone, or node 2 quitting after it) fails the run
    with pytest.raises(EngineError, match=r'node \d exited|lost connection to node \d'):
        clear_mpc(book, timeout=120)


@pytest.mark.slow
def test_progress_is_reported():
    seen = []
    rng = random.Random(2)
    orders = [(f'p{i}', 0, rng.choice(['buy', 'sell']), rng.randint(1, 900), 0.09) for i in range(30)]
    clear_mpc(book_of(orders), chunk=10, progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert ('sharing', 30, 30) in seen and ('validation', 30, 30) in seen and ('allocation', 30, 30) in seen


@pytest.mark.slow
def test_participant_missing_at_one_node_is_left_out(tmp_path):
    import json

    from mpc_market.mpc.jobs import JobDir, job_spec
    from mpc_market.mpc.local import read_public_outputs, reconstruct, run_nodes, share_book
    orders = [('a', 0, 'sell', 100, 0.05), ('b', 0, 'buy', 60, 0.1), ('c', 0, 'buy', 80, 0.12),
              ('d', 0, 'sell', 30, 0.06)]
    book = book_of(orders)
    spec = job_spec(book, 3, 8192)
    spec.save(str(tmp_path))
    share_book(book, spec, str(tmp_path))
    held = JobDir(str(tmp_path)).node(2).held
    with open(held, 'w') as f:
        json.dump(['a', 'b', 'd'], f)  # node 2 never received c's package
    run_nodes(str(tmp_path), 3, timeout=120)
    public = read_public_outputs(str(tmp_path), 3)[0]
    assert public.missing == ['c'] and public.excluded == []
    expected = clear_plain(book_of([o for o in orders if o[0] != 'c']))
    assert [s['traded_wh'] for s in public.slots] == [s.traded_wh for s in expected.slots]
    values = reconstruct(str(tmp_path), spec)
    assert int(values[book.participant_index['c'], 0, 0]) == 0  # nothing matched for c
