"""Hand-made markets with known answers for the plaintext clearing rule."""

from decimal import Decimal

import pytest

from mpc_market.market import rule as reference
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain

CONFIG = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'))  # K = 11 levels


def clear(orders, config=CONFIG):
    book = Book(config, [Order(p, s, side, e, Decimal(str(lim))) for p, s, side, e, lim in orders])
    result = clear_plain(book)
    rows = {(r.participant, r.slot): r for r in result.rows}
    return result.slots, rows


def test_simple_crossing_short_buy_side():
    slots, rows = clear([('s1', 0, 'sell', 1000, 0.12), ('b1', 0, 'buy', 600, 0.15)])
    # S(k)=1000 from level 2; D(k)=600 up to level 5. k*=2: candidates 1 (vol 0) and 2 (vol 600).
    assert (slots[0].level, slots[0].traded_wh, slots[0].residual_wh) == (2, 600, 0)
    assert slots[0].price_units == 12
    assert rows[('b1', 0)].matched_wh == 600
    assert rows[('s1', 0)].matched_wh == 600
    # seller: 600 Wh * 0.12 + 400 Wh * 0.10 (floor) paid out
    assert rows[('s1', 0)].amount == -(600 * 12 + 400 * 10)
    assert rows[('b1', 0)].amount == 600 * 12


def test_rationing_remainder_goes_to_residual():
    slots, rows = clear([('s1', 0, 'sell', 10, 0.10), ('b1', 0, 'buy', 7, 0.20), ('b2', 0, 'buy', 7, 0.20),
                         ('b3', 0, 'buy', 7, 0.20)])
    # S = 10 < D = 21 at every level: k* = K, the only candidate is K-1 (the ceiling), V = S = 10.
    assert (slots[0].level, slots[0].traded_wh, slots[0].price_units) == (10, 10, 20)
    assert [rows[(b, 0)].matched_wh for b in ('b1', 'b2', 'b3')] == [3, 3, 3]  # floor(7*10/21)
    assert slots[0].residual_wh == 1
    assert rows[('s1', 0)].matched_wh == 10


def test_empty_side_means_no_trade():
    slots, rows = clear([('s1', 0, 'sell', 500, 0.11), ('s2', 0, 'sell', 300, 0.12)])
    assert slots[0].level is None and slots[0].price_units is None and slots[0].traded_wh == 0
    assert rows[('s1', 0)].matched_wh == 0 and rows[('s1', 0)].unmatched_wh == 500
    assert rows[('s1', 0)].amount == -500 * 10  # all at the feed-in tariff


def test_one_participant():
    slots, rows = clear([('solo', 3, 'buy', 42, 0.2)])
    assert slots[0].traded_wh == 0 and rows[('solo', 3)].amount == 42 * 20


def test_prices_do_not_cross():
    slots, _ = clear([('s1', 0, 'sell', 500, 0.18), ('b1', 0, 'buy', 500, 0.12)])
    assert slots[0].traded_wh == 0


def test_clamping_and_untradeable():
    # sell below the floor -> level 0; buy above the ceiling -> level K-1;
    # sell above the ceiling / buy below the floor cannot trade locally.
    assert CONFIG.sell_level(Decimal('0.05')) == 0
    assert CONFIG.buy_level(Decimal('0.50')) == CONFIG.levels - 1
    assert CONFIG.sell_level(Decimal('0.21')) is None
    assert CONFIG.buy_level(Decimal('0.09')) is None
    assert CONFIG.sell_level(Decimal('0.125')) == 3  # ceil
    assert CONFIG.buy_level(Decimal('0.125')) == 2   # floor
    slots, rows = clear([('s1', 0, 'sell', 100, 0.01), ('b1', 0, 'buy', 100, 9.0), ('s2', 0, 'sell', 50, 0.5),
                         ('b2', 0, 'buy', 50, 0.02)])
    assert slots[0].traded_wh == 100
    assert rows[('s2', 0)].status == 'retailer' and rows[('s2', 0)].amount == -50 * 10
    assert rows[('b2', 0)].status == 'retailer' and rows[('b2', 0)].amount == 50 * 20


def test_equal_volume_tie_prefers_smaller_imbalance_then_lower_level():
    # S: 100 at level 3; D: 100 at level >= 3 only up to 5.
    s, d = reference.curves([('sell', 3, 100), ('buy', 5, 100)], 11)
    assert reference.choose_level(s, d) == (3, 100)  # k* = 3, candidates (2, vol 0) and (3, vol 100)
    # Volumes tie (both 50) but |S-D| differs.
    s = [0, 50, 50, 60]
    d = [100, 100, 50, 40]
    # k* = 2: candidate 1 vol S(1)=50 |S-D|=50; candidate 2 vol D(2)=50 |S-D|=0 -> level 2.
    assert reference.choose_level(s, d) == (2, 50)
    s = [0, 50, 100, 100]
    d = [150, 150, 50, 0]
    # k* = 2: candidate 1 vol 50 |S-D| = 100; candidate 2 vol 50 |S-D| = 50 -> level 2.
    assert reference.choose_level(s, d) == (2, 50)
    s = [0, 50, 100]
    d = [100, 100, 50]
    # k* = 2: candidate 1 vol 50 |S-D| = 50; candidate 2 vol 50 |S-D| = 50 -> lower level 1.
    assert reference.choose_level(s, d) == (1, 50)


def test_balanced_market_matches_everyone():
    slots, rows = clear([('s1', 0, 'sell', 300, 0.10), ('s2', 0, 'sell', 200, 0.10), ('b1', 0, 'buy', 500, 0.2)])
    assert slots[0].traded_wh == 500 and slots[0].residual_wh == 0
    assert all(r.matched_wh == r.energy_wh for r in rows.values())


@pytest.mark.parametrize('energy', [1, 65535])
def test_maximum_quantities(energy):
    orders = [(f's{i}', 0, 'sell', energy, 0.10) for i in range(3)] + [('b', 0, 'buy', energy, 0.2)]
    slots, rows = clear(orders)
    assert slots[0].traded_wh == energy
    assert sum(rows[(f's{i}', 0)].matched_wh for i in range(3)) + slots[0].residual_wh == energy


def test_energy_balances_in_every_slot():
    import random
    rng = random.Random(5)
    orders = [(f'p{i}', rng.randrange(3), rng.choice(['buy', 'sell']), rng.randint(1, 5000),
               round(rng.uniform(0.08, 0.22), 3)) for i in range(200)]
    slots, rows = clear(orders)
    for s in slots:
        sold = sum(r.matched_wh for r in rows.values() if r.slot == s.slot and r.side == 'sell')
        bought = sum(r.matched_wh for r in rows.values() if r.slot == s.slot and r.side == 'buy')
        assert abs(sold - bought) == s.residual_wh
        assert max(sold, bought) == s.traded_wh
