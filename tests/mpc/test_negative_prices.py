"""Negative prices under MPC equal the plaintext reference exactly (issue 24): markets with a
negative floor, prices crossing zero (floor < 0 < ceiling) and all-negative books (ceiling < 0),
with ties, maximum quantities and one side empty, cleared and settled, one market and zoned.

The random markets run with one MPC party in this process, where a share is the secret itself: a
checker then sees every input of the masked openings, comparisons and divisions and asserts the
range each is proven for (a negative amount or dividend reaching one would be read as a huge
field element, and could leak through the mask or divide wrongly). One edge-case market per kind
runs on three node processes as well (slow)."""

import random
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.market import plain, rule
from mpc_market.market.book import Book
from mpc_market.market.config import MIN_PRICE_FLOOR, MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.settlement import complete_readings
from mpc_market.mpc import field as ff
from mpc_market.mpc.inprocess import clear_in_process, settle_in_process, single_party_runtime
from mpc_market.mpc.local import clear_mpc, settle_mpc

from helpers import run_examples

# -- the range checker ------------------------------------------------------------------------------
CONSUMERS = ('primitives', 'crossing', 'allocation', 'merit_order', 'zones', 'prorata', 'schemes', 'settlement',
             'validation', 'clearing')


def _ints(values):
    return [int(v) % ff.MODULUS for v in np.asarray(values, dtype=object).reshape(-1)]


def _signed(values):
    return [int(v) for v in ff.signed(_ints(values))] if np.size(values) else []


def _checks(primitives):
    """name -> check(args) of the primitives whose inputs have a proven range."""
    sec = primitives.SEC_PARAM

    def comparison(values, bits):
        assert bits + sec < ff.MODULUS_BITS, f'{bits}-bit comparison does not fit the field'
        assert all(-(1 << (bits - 1)) <= v < 1 << (bits - 1) for v in _signed(values)), f'not a {bits}-bit value'

    def division(numerator, denominator, quotient_bits, bits):
        num, den = _ints(numerator), _ints(denominator)
        assert all(d >= 1 and 0 <= n < d << quotient_bits for n, d in zip(num, den, strict=True)), \
            'integer_divide: a dividend outside [0, divisor * 2**quotient_bits)'
        assert all(n < 1 << (bits - 1) for n in num)

    def fraction(numerator, denominator, f, bits):
        num, den = _ints(numerator), _ints(denominator)
        assert all(0 <= n < d and 2 * d < 1 << (bits - 1) for n, d in zip(num, den, strict=True)), \
            'ceil_fraction: a numerator outside [0, denominator)'

    def floor(y, f, y_bits, *bound):
        assert y_bits + sec < ff.MODULUS_BITS, f'{y_bits}-bit masked opening does not fit the field'
        assert all(v < 1 << y_bits for v in _ints(y)), f'a floor input not below 2**{y_bits}'

    return {'less_than_zero': comparison, 'is_zero': comparison, 'sign_of': comparison,
            'integer_divide': division, 'ceil_fraction': fraction,
            'floor_of_ratio_product': floor, 'exact_floor_pow2': floor}


@pytest.fixture(scope='module')
def checked():
    """Every range-proven primitive, wherever a module imported it, checks its inputs first; yields
    the number of checked calls per primitive."""
    single_party_runtime()   # before mpc_market.mpc.primitives imports mpyc.runtime
    import importlib
    primitives = importlib.import_module('mpc_market.mpc.primitives')
    modules = [importlib.import_module(f'mpc_market.mpc.{name}') for name in CONSUMERS]
    calls = dict.fromkeys(_checks(primitives), 0)
    patch = pytest.MonkeyPatch()
    for name, check in _checks(primitives).items():
        original = getattr(primitives, name)

        def wrapped(*args, _original=original, _check=check, _name=name, **kwargs):
            _check(*args, **kwargs)
            calls[_name] += 1
            return _original(*args, **kwargs)
        for module in modules:
            if getattr(module, name, None) is original:
                patch.setattr(module, name, wrapped)
    yield calls
    patch.undo()


# -- markets --------------------------------------------------------------------------------------
@st.composite
def configs(draw, zoned=False):
    """A double auction whose band is negative, crosses zero or is all negative (levels 2..40)."""
    decimals = draw(st.sampled_from([2, 3]))
    scale = 10 ** decimals
    tick = draw(st.sampled_from([1, 2, 5]))
    levels = draw(st.integers(2, 40))
    lowest = int(MIN_PRICE_FLOOR) * scale
    kind = draw(st.sampled_from(['crossing', 'negative', 'deep']))
    if kind == 'crossing':    # floor < 0 < ceiling
        floor_units = -tick * draw(st.integers(1, levels - 1))
    elif kind == 'negative':  # ceiling < 0
        floor_units = -tick * draw(st.integers(levels, levels + 30))
    else:                     # at the lowest floor a market file may have
        floor_units = lowest
    fee = tick * draw(st.integers(0, min(3, levels - 1))) if zoned else 0
    return MarketConfig(Decimal(floor_units) / scale, Decimal(floor_units + (levels - 1) * tick) / scale,
                        Decimal(tick) / scale, draw(st.sampled_from([65535, 50000, 3000])),
                        draw(st.sampled_from([65535, 40000, 2000])), zoned=zoned,
                        network_fee=Decimal(fee) / scale)


@st.composite
def markets(draw, zoned=False):
    """(config, orders, readings): up to 3 slots, limits a few ticks around the band (off the tick
    grid, at it, beyond it), energies up to the maximum, readings around the planned positions."""
    config = draw(configs(zoned))
    scale, tick = config.price_scale * 10, config.price_units(config.tick) * 10
    lo, hi = config.floor_units * 10 - 3 * tick, config.ceiling_units * 10 + 3 * tick
    limit = st.integers(max(lo, int(MIN_PRICE_FLOOR) * scale), hi)
    energy = st.one_of(st.integers(1, config.max_order_wh), st.just(config.max_order_wh))
    order = st.tuples(st.integers(0, 9), st.integers(0, 2), st.sampled_from(['buy', 'sell']), energy, limit)
    orders, seen = [], set()
    for p, s, side, e, lim in draw(st.lists(order, min_size=1, max_size=24)):
        if (p, s) not in seen:
            seen.add((p, s))
            orders.append(Order(f'p{p}', s, side, e, Decimal(lim) / scale, zone=f'z{p % 2}' if zoned else None))
    noise = st.integers(-config.max_reading_wh // 8, config.max_reading_wh // 8)
    readings = {}
    for o in orders:
        # some orders have no reading: the missing-reading rule (whose import must be a valid reading)
        if draw(st.integers(0, 9)) or o.energy_wh > config.max_reading_wh:
            planned = o.energy_wh if o.side == 'buy' else -o.energy_wh
            readings[(o.participant, o.slot)] = max(-config.max_reading_wh,
                                                    min(config.max_reading_wh, planned + draw(noise)))
    for p, s, net in draw(st.lists(st.tuples(st.integers(10, 12), st.integers(0, 2), noise), max_size=3)):
        readings[(f'p{p}', s)] = net   # readings without an order
    return config, orders, readings


def book_and_readings(config, orders, readings):
    zones = {f'p{p}': f'z{p % 2}' for p in range(13)} if config.zoned else None
    book = Book(config, orders, extra_pairs=list(readings), zones=zones)
    return book, complete_readings(book, readings)[0]


def assert_clears_equal(book, engine='in-process', **kwargs):
    reference = plain.clear_plain(book)
    secure = clear_in_process(book, **kwargs) if engine == 'in-process' else clear_mpc(book, timeout=300, **kwargs)
    assert secure.slots == reference.slots
    assert secure.rows == reference.rows
    assert secure.excluded == []
    return secure


def assert_settles_equal(book, net_of, engine='in-process', **kwargs):
    reference = plain.settle_plain(book, net_of)
    secure = settle_in_process(book, net_of, **kwargs) if engine == 'in-process' else \
        settle_mpc(book, net_of, timeout=300, **kwargs)
    assert secure.clearing.slots == reference.clearing.slots
    assert secure.rows == reference.rows
    assert secure.bills == reference.bills
    assert secure.slots == reference.slots
    return secure


SETTINGS = settings(max_examples=run_examples(50), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(markets())
def test_random_negative_markets_clear_and_settle_exactly(checked, market):
    book, net_of = book_and_readings(*market)
    assert_clears_equal(book)
    assert_settles_equal(book, net_of)


def prorata_reference(book):
    """Per slot (level, volume, residual) and per order (matched, amount) of the pro-rata rule."""
    k, config = book.config.levels, book.config
    slots, rows = {}, {}
    for slot in book.slots:
        entries = [(o, book.positions[(o.participant, o.slot)][0]) for o in book.orders if o.slot == slot]
        entries = [(o, ('sell', p) if p < k else ('buy', p - k)) for o, p in entries if p is not None]
        level, volume, residual, each = rule.prorata_clear_slot([(s, lv, o.energy_wh) for o, (s, lv) in entries], k)
        slots[slot] = (level, volume, residual)
        price = None if level is None else config.level_price_units(level)
        rows.update({(o.participant, o.slot): (m, rule.order_amount(config, o.side, o.energy_wh, m, price))
                     for (o, _), m in zip(entries, each, strict=True)})
    return slots, rows


@SETTINGS
@given(markets())
def test_random_negative_markets_under_the_pro_rata_rule(checked, market):
    """The benchmarks' pro-rata allocation (mpc.prorata) on the same markets: levels, matches and
    signed amounts."""
    book, _ = book_and_readings(*market)
    result = clear_in_process(book, allocation='pro-rata')
    slots, rows = prorata_reference(book)
    assert {r.slot: (r.level, r.traded_wh, r.residual_wh) for r in result.slots} == slots
    assert {(r.participant, r.slot): (r.matched_wh, r.amount) for r in result.rows if r.status == 'cleared'} == rows


@SETTINGS
@given(markets(zoned=True))
def test_random_negative_zoned_markets_clear_and_settle_exactly(checked, market):
    book, net_of = book_and_readings(*market)
    assert_clears_equal(book)
    assert_settles_equal(book, net_of)


def test_the_checker_saw_every_primitive(checked):
    """The checks run: one settlement (in small chunks, so the chunked paths too) reaches every checked
    primitive."""
    book, net_of = edge_market(CROSSING)
    assert_settles_equal(book, net_of, chunk=4)
    assert all(checked[name] for name in ('less_than_zero', 'is_zero', 'sign_of', 'integer_divide',
                                          'ceil_fraction', 'floor_of_ratio_product', 'exact_floor_pow2')), checked


# -- edge cases, each a slot of one market ------------------------------------------------------------
CROSSING = MarketConfig(Decimal('-0.30'), Decimal('0.20'), Decimal('0.01'), 50000, 40000)   # 51 levels
NEGATIVE = MarketConfig(Decimal('-0.50'), Decimal('-0.10'), Decimal('0.01'), 50000, 40000)  # all below zero
DEEPEST = MarketConfig(MIN_PRICE_FLOOR, Decimal('-9.95'), Decimal('0.001'), 65535, 65535)   # the lowest floor
ZONED = MarketConfig(Decimal('-0.30'), Decimal('0.20'), Decimal('0.01'), 50000, 40000, zoned=True,
                     network_fee=Decimal('0.02'))


def edge_orders(config):
    """Per slot one edge case, with limits in the config's band (level k at floor + k ticks)."""
    k, top, big = config.levels, config.levels - 1, config.max_order_wh

    def at(level):
        return config.level_price(max(0, min(top, level)))
    middle, below, above = at(k // 2), config.price_floor - config.tick, config.price_ceiling + config.tick
    return [
        ('s1', 0, 'sell', 500, at(1)), ('s2', 0, 'sell', 700, at(2)),               # slot 0: no buys at all
        ('b1', 1, 'buy', 300, at(top)),                                           # slot 1: no sells at all
        ('b1', 2, 'buy', big, middle), ('b2', 2, 'buy', big, at(top)),             # slot 2: maximum quantities
        ('s1', 2, 'sell', big, config.price_floor), ('s2', 2, 'sell', big, middle),
        ('s1', 3, 'sell', 50, at(k // 2 - 1)), ('s2', 3, 'sell', 50, middle),       # slot 3: a tie of candidates
        ('b1', 3, 'buy', 50, at(k // 2 - 1)), ('b2', 3, 'buy', 50, middle),
        ('b1', 4, 'buy', 7, middle), ('b2', 4, 'buy', 7, middle), ('b3', 4, 'buy', 7, middle),  # slot 4: remainder
        ('s1', 4, 'sell', 10, at(0)),
        ('b1', 5, 'buy', 100, at(2)), ('s1', 5, 'sell', 100, at(top - 1)),          # slot 5: prices do not cross
        ('b1', 6, 'buy', 100, below), ('s1', 6, 'sell', 100, above),               # slot 6: both untradeable
        ('s2', 6, 'sell', 40, below),                                              # a sell below the floor trades at it
        ('b2', 6, 'buy', 40, above),                                               # a buy above the ceiling at it
    ]


def edge_market(config):
    """The edge-case orders and readings off their plans by odd amounts (inexact divisions), a
    participant without orders, and one order without a reading."""
    zones = ('za', 'zb')
    orders = [Order(p, s, side, e, Decimal(lim), zone=zones[int(p[1:]) % 2] if config.zoned else None)
              for p, s, side, e, lim in edge_orders(config)]
    rng = random.Random(24)
    readings = {}
    for o in orders[1:]:
        planned = o.energy_wh if o.side == 'buy' else -o.energy_wh
        readings[(o.participant, o.slot)] = max(-config.max_reading_wh,
                                                min(config.max_reading_wh, planned + rng.randint(-97, 97)))
    readings[('m1', 0)], readings[('m1', 3)] = 13, -29   # a meter without orders
    zone_of = {p: zones[int(p[1:]) % 2] for p in ('s1', 's2', 'b1', 'b2', 'b3', 'm1')} if config.zoned else None
    book = Book(config, orders, extra_pairs=list(readings), zones=zone_of)
    return book, complete_readings(book, readings)[0]


@pytest.mark.parametrize('config', [CROSSING, NEGATIVE, DEEPEST, ZONED], ids=['crossing', 'negative', 'deepest',
                                                                             'zoned'])
def test_edge_cases_in_process(checked, config):
    book, net_of = edge_market(config)
    cleared = assert_clears_equal(book)
    settled = assert_settles_equal(book, net_of)
    by_slot = {s.slot: s for s in cleared.slots}
    assert by_slot[0].traded_wh == by_slot[1].traded_wh == by_slot[5].traded_wh == 0 or config.zoned
    if not config.zoned:
        assert by_slot[2].traded_wh == 2 * config.max_order_wh and by_slot[4].residual_wh == 1
        assert by_slot[6].traded_wh == 40 and by_slot[6].price_units is not None
    amounts = [r.amount for r in settled.rows] + [r.deviation_amount for r in settled.rows]
    assert min(amounts) < 0 < max(amounts)
    if config.ceiling_units < 0:  # every price negative: a matched sell pays, a matched buy is paid
        assert all(r.amount > 0 for r in cleared.rows if r.side == 'sell' and r.matched_wh)
        assert all(r.amount < 0 for r in cleared.rows if r.side == 'buy' and r.matched_wh == r.energy_wh)


def test_settlement_rounds_down_with_negative_prices(checked):
    """The reference's floor (towards -inf), reproduced under MPC: with a negative deviation price a
    short participant is paid and a long one charged, each rounded away from zero, the residue the
    retailer's (so money still balances to the unit)."""
    config = MarketConfig(Decimal('-0.50'), Decimal('0.30'), Decimal('0.01'), 5000, 5000)
    orders = [Order('c1', 0, 'sell', 300, Decimal('-0.50'))]   # nothing trades: price (floor + ceiling)/2 = -0.10
    readings = {('c1', 0): -307, ('c2', 0): 3, ('c3', 0): -2}  # long 7, short 3, long 2
    book = Book(config, orders, extra_pairs=list(readings))
    settled = assert_settles_equal(book, readings)
    deviation = {r.participant: r.deviation_amount for r in settled.rows}
    # Short 3 at -0.10: -30 exactly; Long 9: 3 Wh at -0.10 and 6 at the floor -0.50, -660/2 for 9 Wh
    assert deviation == {'c1': 257, 'c2': -30, 'c3': 74}   # 256.67 and 73.33 rounded up: -floor(-x)
    slot = settled.slots[0]
    assert (slot.retailer_receives, slot.retailer_pays, slot.retailer_net, slot.residue) == (0, -300, 301, 1)


# -- the same edge cases on three node processes -----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('config', [CROSSING, NEGATIVE, ZONED], ids=['crossing', 'negative', 'zoned'])
def test_edge_cases_on_node_processes(config):
    book, net_of = edge_market(config)
    assert_clears_equal(book, 'processes')
    assert_settles_equal(book, net_of, 'processes')
