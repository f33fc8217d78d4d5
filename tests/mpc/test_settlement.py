"""Deviation settlement and community schemes under MPC equal the plaintext reference, cheaters included."""

import dataclasses
import random
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.market import plain, settlement
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.mpc import local
from mpc_market.mpc.inprocess import settle_in_process

from helpers import run_examples
from malicious import tamper_clients

F, C = 10, 20  # floor and ceiling in price units
CONFIG = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 50000, 40000)


def random_market(seed, participants=14, slots=2):
    rng = random.Random(seed)
    orders, readings = [], {}
    for p in range(participants):
        for s in range(slots):
            if rng.random() < 0.75:
                side = rng.choice(['buy', 'sell'])
                energy = rng.choice([rng.randint(1, 3000), 50000])
                orders.append(Order(f'p{p:02d}', s, side, energy, Decimal(rng.randint(8, 22)) / 100))
                planned = energy if side == 'buy' else -energy
            else:
                planned = 0
            if rng.random() < 0.9 or planned:
                readings[(f'p{p:02d}', s)] = max(-40000, min(40000, planned + rng.randint(-800, 800)))
    return Book(CONFIG, orders, extra_pairs=list(readings)), readings


# the arithmetic with one party in this process (fast), and the same with three node processes
ENGINES = [pytest.param('in-process', id='in-process'), pytest.param('processes', marks=pytest.mark.slow)]


def assert_settlements_equal(book, net_of, engine='processes', **kwargs):
    reference = plain.settle_plain(book, net_of)
    secure = settle_in_process(book, net_of, **kwargs) if engine == 'in-process' else \
        local.settle_mpc(book, net_of, timeout=300, **kwargs)
    assert secure.clearing.slots == reference.clearing.slots
    assert secure.rows == reference.rows
    assert secure.bills == reference.bills
    assert secure.slots == reference.slots
    return secure


def random_markets(seeds, participants=14, slots=2):
    """Independent random markets side by side in one book: market j in slots 2j.., its own participants."""
    orders, readings = [], {}
    for j, seed in enumerate(seeds):
        book, net_of = random_market(seed, participants, slots)
        orders += [Order(f'm{j}{o.participant}', o.slot + slots * j, o.side, o.energy_wh, o.limit_price)
                   for o in book.orders]
        readings.update({(f'm{j}{p}', s + slots * j): net for (p, s), net in net_of.items()})
    return Book(CONFIG, orders, extra_pairs=list(readings)), readings


@settings(max_examples=run_examples(3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 10**6), min_size=5, max_size=5))  # five random markets in one MPC run
def test_mpc_settlement_equals_reference(seeds):
    """One party in this process; the edge cases, 5 and 7 nodes, two sessions and cheaters below
    run node processes."""
    assert_settlements_equal(*random_markets(seeds), engine='in-process')


@pytest.mark.parametrize('engine', ENGINES)
def test_mpc_settlement_edge_cases(engine):
    orders = [Order('a', 0, 'buy', 100, Decimal('0.15')), Order('b', 0, 'sell', 100, Decimal('0.12')),
              Order('c', 1, 'buy', 10, Decimal('0.11')), Order('d', 2, 'sell', 40000, Decimal('0.5'))]
    readings = {('a', 0): 100, ('b', 0): -100,            # slot 0: nobody deviates
                ('c', 1): 40, ('e', 1): 25,               # slot 1: all short, no trade, reading-only e
                ('d', 2): -40000, ('e', 2): -3}           # slot 2: all long, maximum reading
    book = Book(CONFIG, orders, extra_pairs=list(readings))
    assert_settlements_equal(book, readings, engine)


@pytest.mark.slow
@pytest.mark.parametrize('nodes', [5, 7])
def test_mpc_settlement_with_more_nodes(nodes):
    """5 nodes draw their randomness by PRSS, 7 without it (mpc/node.py PRSS_UP_TO): both paths."""
    assert_settlements_equal(*random_market(nodes, participants=8, slots=1), nodes=nodes)


@pytest.mark.slow
def test_settlement_as_a_second_session_over_the_kept_order_shares():
    """What a deployment does: clear, then settle in a new session whose planned positions come
    from the order shares kept from clearing. Equal to the reference, one market and zoned."""
    book, readings = random_market(21, participants=10, slots=2)
    assert_settlements_equal(book, readings, sessions=2)
    zoned = dataclasses.replace(CONFIG, zoned=True, network_fee=Decimal('0.02'))
    orders = [dataclasses.replace(o, zone=f'z{int(o.participant[-1]) % 3}') for o in book.orders]
    assert_settlements_equal(Book(zoned, orders, extra_pairs=list(readings)), readings, sessions=2)


@pytest.mark.slow
@pytest.mark.parametrize('sessions', [1, 2])
def test_cheating_meter_packages_are_excluded_from_settlement(monkeypatch, node_fault, sessions):
    node_fault('check-floors', 0)  # and no cheat reaches a floor (test-only check in the nodes)
    from mpc_market.market.book import ReadingLayout
    book, readings = random_market(11, participants=10, slots=1)
    layout = ReadingLayout.for_config(CONFIG)
    no_deviation, out_of_range = book.participants[3], book.participants[6]
    rows = {name: book.participant_index[name] for name in (no_deviation, out_of_range)}

    def bits(value, count):
        return [(value >> i) & 1 for i in range(count)]

    def tamper(node, participants, data):
        if node is not None:
            return data
        if rows[no_deviation] in participants:  # claims |d| = 0 whatever it measured
            data[rows[no_deviation] - participants.start, 0, 1:] = 0
        if rows[out_of_range] in participants:  # exports 50 000 Wh > max_reading_wh = 40 000, consistently
            r = rows[out_of_range] - participants.start
            planned = settlement.planned_position(book.order_of.get((out_of_range, 0)))
            deviation = -50000 - planned
            data[r, 0, 0] = deviation < 0
            data[r, 0, layout.dev_bits] = bits(abs(deviation), layout.deviation_bits)
            data[r, 0, layout.pos_bits] = 0
            data[r, 0, layout.neg_bits] = bits(50000, layout.reading_bits)
            data[r, 0, layout.slack] = 0  # no slack can make 50 000 + slack = 40 000
        return data

    tamper_clients(monkeypatch, book, tamper, readings=True)
    secure = local.settle_mpc(book, readings, timeout=300, sessions=sessions)
    assert secure.stats['meter_excluded'] == sorted([no_deviation, out_of_range])
    # clearing is untouched; the cheats settle by the missing-reading rule, everyone else as measured
    substituted = dict(readings)
    for cheat in (no_deviation, out_of_range):
        substituted[(cheat, 0)] = settlement.missing_reading_net(book.order_of.get((cheat, 0)))
    reference = plain.settle_plain(book, substituted)
    assert secure.clearing.rows == reference.clearing.rows
    assert secure.slots == reference.slots
    assert [(r.participant, r.deviation_wh, r.deviation_amount) for r in secure.rows] == \
        [(r.participant, r.deviation_wh, r.deviation_amount) for r in reference.rows]


def test_a_missing_reading_is_settled_by_the_one_rule():
    """No reading: a buy counts as imported, a sell as not delivered (short), a slot without order as 0."""
    orders = [Order('a', 0, 'buy', 700, Decimal('0.20')), Order('b', 0, 'sell', 900, Decimal('0.10')),
              Order('c', 0, 'sell', 300, Decimal('0.10'))]
    book = Book(CONFIG, orders, extra_pairs=[('c', 0), ('d', 0)])
    net_of, missing = settlement.complete_readings(book, {('c', 0): -300, ('d', 0): 250})
    assert missing == [('a', 0), ('b', 0)]
    assert net_of == {('a', 0): 700, ('b', 0): 0, ('c', 0): -300, ('d', 0): 250}
    result = plain.settle_plain(book, net_of)
    deviation = {r.participant: r.deviation_wh for r in result.rows}
    assert deviation == {'a': 0, 'b': 900, 'c': 0, 'd': 250}


@pytest.mark.parametrize('engine', ENGINES)
@pytest.mark.parametrize('mechanism', ['sdr', 'mmr', 'bill-sharing'])
def test_community_schemes_under_mpc_equal_reference(mechanism, engine):
    import dataclasses
    config = dataclasses.replace(CONFIG, mechanism=mechanism)
    rng = random.Random(hash(mechanism) % 1000)
    orders, readings = [], {}
    # slot 0: more demand, slot 1: more supply, slot 2: buyers only, slot 3: sellers only, slot 4: balanced
    plan = {0: (3, 6), 1: (6, 3), 2: (0, 4), 3: (4, 0), 4: (2, 2)}
    for slot, (sellers, buyers) in plan.items():
        for i in range(sellers + buyers):
            side = 'sell' if i < sellers else 'buy'
            energy = 500 if slot == 4 else rng.randint(1, 4000)
            name = f'q{slot}{i}'
            orders.append(Order(name, slot, side, energy, Decimal('0.15')))
            readings[(name, slot)] = (energy if side == 'buy' else -energy) + rng.randint(-300, 300)
    book = Book(config, orders, extra_pairs=list(readings))
    secure = assert_settlements_equal(book, readings, engine)
    prices = [(s.buy_price_units, s.sell_price_units) for s in secure.clearing.slots]
    assert all(0 <= price <= C for pair in prices for price in pair)
    if mechanism != 'bill-sharing':
        assert all(F <= sell for _, sell in prices)
    assert all(r.matched_wh == r.energy_wh for r in secure.rows if r.side)  # whole orders trade


