"""The plaintext settlement rule and scheme prices: hand-made answers, money balance, file errors."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_market.market import plain
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.settlement import settle_slot

F, C = 10, 20  # floor and ceiling in price units
CONFIG = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 50000, 40000)


def test_no_deviation():
    outcome, amounts = settle_slot([0, 0, 0], 30, F, C)
    assert amounts == [0, 0, 0] and outcome.retailer_net == 0


def test_all_short_pay_the_ceiling():
    outcome, amounts = settle_slot([100, 50], 30, F, C)
    assert amounts == [100 * C, 50 * C]  # N = 0: all from the retailer at the retail price
    assert outcome.retailer_receives == 150 * C and outcome.retailer_pays == 0 and outcome.residue == 0


def test_all_long_are_paid_the_floor():
    outcome, amounts = settle_slot([-100, -30, 0], 30, F, C)
    assert amounts == [-100 * F, -30 * F]  + [0]
    assert outcome.retailer_pays == 130 * F and outcome.retailer_net == -130 * F


def test_exact_netting_at_the_slot_price():
    outcome, amounts = settle_slot([70, -70], 2 * 15, F, C)  # P = 15
    assert amounts == [70 * 15, -70 * 15]
    assert outcome.retailer_receives == 0 and outcome.retailer_pays == 0 and outcome.retailer_net == 0


def test_partial_netting_and_rounding_towards_zero():
    # Short = 30 (two of 15), Long = 20: N = 20; short pay (20*15 + 10*20)/30 per Wh = 16.67
    outcome, amounts = settle_slot([15, 15, -20], 30, F, C)
    assert amounts == [15 * 500 // 30, 15 * 500 // 30, -20 * 15]
    assert sum(amounts) == outcome.retailer_net
    assert outcome.retailer_receives == 10 * C and outcome.residue == sum(amounts) - 10 * C


def test_no_trade_price_is_the_midpoint():
    rows = [Order('a', 0, 'buy', 100, Decimal('0.11')), Order('b', 0, 'sell', 100, Decimal('0.19'))]
    book = Book(CONFIG, rows)
    result = plain.settle_plain(book, {('a', 0): 120, ('b', 0): -120})  # a short 20, b long 20
    by = {r.participant: r for r in result.rows}
    assert result.clearing.slots[0].traded_wh == 0
    assert by['a'].deviation_amount == 20 * 15 and by['b'].deviation_amount == -20 * 15  # (10 + 20) / 2
    assert by['a'].amount == 100 * C and by['b'].amount == -100 * F


@given(st.lists(st.integers(-5000, 5000), min_size=1, max_size=40), st.integers(20, 40))
def test_money_balances_and_signs(deviations, price2):
    outcome, amounts = settle_slot(deviations, price2, F, C)
    assert sum(amounts) == outcome.retailer_net  # participants' net payments are the retailer's income
    assert all(a >= 0 if d > 0 else a <= 0 for d, a in zip(deviations, amounts, strict=True))
    assert all(a == 0 for d, a in zip(deviations, amounts, strict=True) if d == 0)
    shorts = sum(1 for d in deviations if d > 0)
    longs = sum(1 for d in deviations if d < 0)
    assert -shorts - 1 <= outcome.residue <= longs + 1


def test_readings_file_errors(tmp_path):
    from mpc_market.common.errors import InputError
    from mpc_market.market.readings import load_readings
    path = tmp_path / 'r.csv'
    for body, line, field in [('participant,slot\n', 1, 'net_wh'), ('participant,slot,net_wh\na,0,x\n', 2, 'net_wh'),
                              ('participant,slot,net_wh\na,0,40001\n', 2, 'net_wh'),
                              ('participant,slot,net_wh\na,0,1\na,0,2\n', 3, 'participant')]:
        path.write_text(body)
        with pytest.raises(InputError) as info:
            load_readings(path, CONFIG)
        assert (info.value.line, info.value.field) == (line, field)


def test_scheme_prices_hand_values():
    from mpc_market.market.schemes import scheme_prices
    # S = 50, D = 100 (SDR = 1/2): sell = 20*10*100/(10*50 + 10*100) = 13.33 -> 14; buy = (13.33*50 + 20*50)/100
    assert scheme_prices('sdr', 50, 100, F, C) == (16, 14)
    assert scheme_prices('sdr', 100, 50, F, C) == (F, F)
    assert scheme_prices('mmr', 100, 50, F, C) == (15, 13)   # sellers (50*15 + 50*10)/100 = 12.5 -> 13
    assert scheme_prices('mmr', 50, 100, F, C) == (17, 15)   # buyers (50*15 + 50*20)/100 = 17.5 -> 17
    assert scheme_prices('bill-sharing', 50, 100, F, C) == (10, 0)
    assert scheme_prices('bill-sharing', 100, 50, F, C) == (0, 5)
