"""Merit order and the zoned market under MPC against the plaintext reference: random zoned markets
with one party in the test process; the seed paper's cases I and II through the CLI, edge cases,
settlement, chunked streaming and scenario S1 with node processes over TLS on 127.0.0.1 (the edge
cases both ways)."""

import random
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain, settle_plain
from mpc_market.mpc.inprocess import clear_in_process
from mpc_market.mpc.local import clear_mpc, clear_peers, settle_mpc

from helpers import cli, read_rows, run_examples

SMALL = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 50000)  # 11 levels, slack bits
SEED_MARKET = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
SEED_ORDERS = ('participant,slot,side,energy_wh,limit_price\nP3,0,sell,200,0.048\nP5,0,sell,180,0.050\n'
               'P2,0,buy,140,0.096\nP4,0,buy,100,0.096\n')


def zoned(fee, zone_of=()):
    return replace(SMALL, zoned=True, network_fee=Decimal(fee), zone_map=tuple(sorted(zone_of)))


def book_of(orders, config):
    """orders: (participant, slot, side, energy, limit, zone)."""
    return Book(config, [Order(p, s, side, e, Decimal(str(lim)), zone=z) for p, s, side, e, lim, z in orders])


# the arithmetic with one party in this process (fast), and the same with three node processes
ENGINES = [pytest.param('in-process', id='in-process'), pytest.param('processes', marks=pytest.mark.slow)]


def assert_same(book, engine='processes', **kwargs):
    plain = clear_plain(book)
    secure = clear_in_process(book, **kwargs) if engine == 'in-process' else clear_mpc(book, timeout=300, **kwargs)
    assert secure.slots == plain.slots
    assert secure.rows == plain.rows
    return secure


def clear_seed_case(tmp_path, market_text):
    (tmp_path / 'market.toml').write_text(market_text)
    (tmp_path / 'orders.csv').write_text(SEED_ORDERS)
    for engine in ('mpc', 'plain'):
        cli('clear', '--engine', engine, '--orders', tmp_path / 'orders.csv', '--config', tmp_path / 'market.toml',
            '--out', tmp_path / engine, '--quiet', check=True)
    for name in ('public.csv', 'participants.csv'):
        assert (tmp_path / 'mpc' / name).read_text() == (tmp_path / 'plain' / name).read_text()
    return read_rows(tmp_path / 'mpc' / 'public.csv'), {r['participant']: r for r in
                                                         read_rows(tmp_path / 'mpc' / 'participants.csv')}


@pytest.mark.slow
def test_seed_case_one_through_the_cli(tmp_path):
    public, rows = clear_seed_case(tmp_path, SEED_MARKET)
    assert public == [{'slot': '0', 'slot_start': '', 'price': '0.050', 'traded_wh': '240', 'residual_wh': '0'}]
    assert {p: int(r['matched_wh']) for p, r in rows.items()} == {'P3': 200, 'P5': 40, 'P2': 140, 'P4': 100}


@pytest.mark.slow
def test_seed_case_two_through_the_cli(tmp_path):
    public, rows = clear_seed_case(tmp_path, SEED_MARKET + 'zones = true\nnetwork_fee = 0.010\n'
                                   '[zones]\nA = ["P2", "P4", "P5"]\nB = ["P3"]\n')
    markets = {r['market']: r for r in public}
    assert markets['zone:A']['traded_wh'] == '180' and markets['zone:B']['traded_wh'] == '0'
    assert (markets['cross']['price'], markets['cross']['traded_wh']) == ('0.048', '60')
    assert markets['network-operator']['fee_amount'] == '0.000600'
    assert (rows['P5']['local_wh'], rows['P5']['cross_wh']) == ('180', '0')   # the paper's Table 3: P5 180
    assert (rows['P3']['local_wh'], rows['P3']['cross_wh']) == ('0', '60')    # and P3 60 across


zoned_order = st.tuples(
    st.integers(0, 9), st.integers(0, 1), st.sampled_from(['buy', 'sell']),
    st.one_of(st.integers(1, 50000), st.sampled_from([1, 50000])),
    st.sampled_from(['0.05', '0.10', '0.13', '0.15', '0.17', '0.20', '0.25', '0.114', '0.186']))


@settings(max_examples=run_examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(zoned_order, min_size=1, max_size=25), min_size=3, max_size=3),
       st.sampled_from(['0', '0.01', '0.03']), st.integers(1, 4))
def test_random_zoned_markets_agree_exactly(markets, fee, zones):
    """Independent random markets side by side (market j in slots 2j, 2j+1, its own participants),
    participant p in zone p mod zones: ties, clamped and untradeable limits, one-sided zones."""
    seen, orders = set(), []
    for j, raw in enumerate(markets):
        for p, s, side, e, lim in raw:
            if (j, p, s) not in seen:
                seen.add((j, p, s))
                orders.append((f'm{j}p{p}', 2 * j + s, side, e, lim, f'z{p % zones}'))
    assert_same(book_of(orders, zoned(fee)), 'in-process')


@pytest.mark.parametrize('engine', ENGINES)
def test_zoned_edge_cases_in_one_run(engine):
    orders = [
        ('a1', 0, 'sell', 500, 0.10, 'A'), ('a2', 0, 'sell', 300, 0.11, 'A'),     # slot 0: A sells only,
        ('b1', 0, 'buy', 400, 0.20, 'B'), ('b2', 0, 'buy', 50000, 0.25, 'B'),    # B buys only (clamped)
        ('c1', 1, 'buy', 70, 0.12, 'C'),                                         # slot 1: one participant
        ('a1', 2, 'sell', 50000, 0.05, 'A'), ('a2', 2, 'sell', 50000, 0.10, 'A'),  # slot 2: maximum
        ('b1', 2, 'buy', 50000, 0.20, 'B'), ('c1', 2, 'buy', 50000, 0.20, 'C'),  # quantities across
        ('a1', 3, 'sell', 10, 0.10, 'A'), ('b1', 3, 'buy', 7, 0.11, 'B'),        # slot 3: fee blocks the
        ('b2', 3, 'buy', 7, 0.30, 'B'),                                          # cross for b1 only
        ('a1', 4, 'sell', 10, 0.15, 'A'), ('a2', 4, 'buy', 7, 0.15, 'A'),        # slot 4: ties in A and
        ('b1', 4, 'buy', 7, 0.15, 'B'), ('b2', 4, 'buy', 7, 0.17, 'B'),          # a remainder across
        ('c1', 4, 'buy', 7, 0.17, 'C'), ('c2', 4, 'sell', 3, 0.21, 'C'),         # an untradeable sell
    ]
    config = zoned('0.02', [('e1', 'E')])   # zone E from the map has no orders at all
    result = assert_same(book_of(orders, config), engine)
    by_slot = {s.slot: s for s in result.slots}
    assert [z.zone for z in by_slot[0].zones] == ['A', 'B', 'C', 'E']
    assert by_slot[0].traded_wh == 800 and by_slot[1].traded_wh == 0   # all of A's 800 Wh cross to B


@pytest.mark.slow
@pytest.mark.parametrize('nodes', [5, 7])
def test_zoned_chunked_streaming_and_more_nodes(nodes):
    """5 nodes with PRSS randomness, 7 without (mpc/node.py PRSS_UP_TO)."""
    rng = random.Random(11)
    orders = [(f'p{i}', s, rng.choice(['buy', 'sell']), rng.randint(1, 3000), rng.choice(['0.11', '0.14', '0.17']),
               f'z{i % 3}') for i in range(24) for s in range(2) if rng.random() < 0.8]
    assert_same(book_of(orders, zoned('0.01')), chunk=10, nodes=nodes)


@pytest.mark.slow
def test_zoned_settlement_equals_reference():
    rng = random.Random(3)
    orders, readings = [], {}
    for i in range(18):
        for s in range(2):
            if rng.random() < 0.8:
                side, energy = rng.choice(['buy', 'sell']), rng.randint(1, 3000)
                orders.append(Order(f'p{i:02d}', s, side, energy, Decimal(rng.randint(9, 21)) / 100, zone=f'z{i % 3}'))
                planned = energy if side == 'buy' else -energy
            else:
                planned = 0
            readings[(f'p{i:02d}', s)] = planned + rng.randint(-500, 500)
    book = Book(replace(zoned('0.02'), max_reading_wh=40000), orders, extra_pairs=list(readings))
    reference = settle_plain(book, readings)
    secure = settle_mpc(book, readings, timeout=300)
    assert secure.clearing.slots == reference.clearing.slots
    assert secure.rows == reference.rows and secure.bills == reference.bills and secure.slots == reference.slots


@pytest.mark.slow
def test_zoned_peers_mode():
    orders = [('alice', 0, 'sell', 1200, 0.11, 'A'), ('bob', 0, 'buy', 800, 0.19, 'B'),
              ('carol', 0, 'buy', 900, 0.15, 'A'), ('dave', 0, 'sell', 300, 0.12, 'B')]
    book = book_of(orders, zoned('0.01'))
    plain = clear_plain(book)
    peers = clear_peers(book, timeout=300)
    assert peers.slots == plain.slots and peers.rows == plain.rows
    assert any(r.cross_wh for r in peers.rows)


@pytest.mark.slow
def test_a_participant_outside_the_job_zone_map_trades_nowhere(monkeypatch):
    """The nodes take zones from the job (a deployment: the round's market file), never from what a
    participant sends: one with no zone there trades in no zone (its orders settle with the
    retailer), and the rest clear as the reference without it."""
    from mpc_market.mpc import local

    real_job_spec = local.job_spec

    def without_zone(book, nodes, chunk):
        spec = real_job_spec(book, nodes, chunk)
        spec.zone_of.pop('b1')
        return spec
    monkeypatch.setattr(local, 'job_spec', without_zone)
    orders = [('a1', 0, 'sell', 500, 0.10, 'A'), ('b1', 0, 'buy', 400, 0.20, 'B'), ('b2', 0, 'buy', 300, 0.19, 'B')]
    secure = clear_mpc(book_of(orders, zoned('0.01')), timeout=300)
    honest = clear_plain(book_of([o for o in orders if o[0] != 'b1'], zoned('0.01')))
    assert secure.slots == honest.slots
    rows = {r.participant: r for r in secure.rows}
    assert (rows['b1'].matched_wh, rows['b1'].unmatched_wh, rows['b1'].amount) == (0, 400, 400 * 20)
    assert [rows[r.participant] for r in honest.rows] == honest.rows


@pytest.mark.slow
def test_generate_writes_a_zoned_community_that_clears_under_mpc(tmp_path):
    out = cli('generate', '--participants', '60', '--slots', '2', '--zones', '3', '--seed', '5', '--out', tmp_path,
              check=True)
    assert 'orders.csv' in out.stdout
    assert 'zones = true' in (tmp_path / 'market.toml').read_text()
    orders = read_rows(tmp_path / 'orders.csv')
    feeders = {r['participant']: r['zone'] for r in read_rows(tmp_path / 'feeders.csv')}
    assert {o['zone'] for o in orders} == {'Z00', 'Z01', 'Z02'}
    assert all(o['zone'] == feeders[o['participant']] for o in orders)   # zones of whole feeders
    common = ['--orders', tmp_path / 'orders.csv', '--config', tmp_path / 'market.toml', '--quiet']
    cli('clear', *common, '--out', tmp_path / 'mpc', check=True)
    cli('clear', *common, '--out', tmp_path / 'plain', '--engine', 'plain', check=True)
    for name in ('public.csv', 'participants.csv'):
        assert (tmp_path / 'mpc' / name).read_text() == (tmp_path / 'plain' / name).read_text()
    bad = cli('generate', '--participants', '5', '--zones', '2', '--network-fee', '0.0105', '--out', tmp_path / 'b')
    assert bad.returncode == 2 and 'network_fee' in bad.stderr


@pytest.mark.slow
def test_demo_shows_a_zoned_market():
    out = cli('demo', '--participants', '40', '--slots', '2', check=True)
    assert out.stdout.count('Plaintext reference agrees exactly.') == 2, out.stdout
    assert 'zoned market' in out.stdout and 'zone Z00' in out.stdout


@pytest.mark.slow
def test_malicious_orders_in_a_zoned_market_never_reach_a_floor(monkeypatch, node_fault):
    """Cheating participants are excluded in a zoned market too, and their values are zeroed before
    any floor: the nodes check (test only) that every floor input keeps its bound."""
    from mpc_market.mpc import field as ff

    from malicious import tamper_clients
    node_fault('check-floors', 0)
    honest = [('a1', 0, 'sell', 900, '0.11', 'A'), ('a2', 0, 'buy', 300, '0.12', 'A'),
              ('b1', 0, 'buy', 800, '0.19', 'B'), ('b2', 0, 'sell', 100, '0.18', 'B')]
    cheats = [('x_negative', 0, 'sell', 1000, '0.10', 'A'), ('x_huge', 0, 'buy', 1000, '0.20', 'B')]
    book = book_of(honest + cheats, zoned('0.01'))
    k = book.layout.levels

    def tamper(node, participants, data):
        if node is None:
            return data
        # energy at every level of both sides, so some of it sits wherever the levels fall
        for name, delta in (('x_negative', -5000), ('x_huge', 1 << 100)):
            i = book.participant_index[name]
            if i in participants:
                r = i - participants.start
                for column in range(book.layout.weighted.start, book.layout.weighted.start + 2 * k):
                    value = int(ff.to_ints(data[:, r, 0, column]))
                    data[:, r, 0, column] = ff.from_ints(np.array((value + delta) % ff.MODULUS, dtype=object))
        return data
    tamper_clients(monkeypatch, book, tamper)
    secure = clear_mpc(book, timeout=300)
    assert secure.excluded == ['x_huge', 'x_negative']
    plain = clear_plain(book_of(honest, zoned('0.01')))
    assert secure.slots == plain.slots and [r for r in secure.rows if r.participant[0] != 'x'] == plain.rows
