"""Results as DataFrames with exact Decimal currency and UTC slot starts, and the API's plots (issue 24)."""

import dataclasses
import datetime
from decimal import Decimal

import pytest

import mpc_market as mm
from mpc_market.common.errors import BadParameter
from mpc_market.market.config import parse_config

pytest.importorskip('pandas')

MARKET = ('[market]\nprice_floor = -0.05\nprice_ceiling = 0.30\ntick = 0.01\ncurrency = "CHF"\n'
          'start = 2026-10-24T22:00:00Z\ntimezone = "Europe/Zurich"\n')


def book_and_readings():
    config = parse_config('m.toml', MARKET)
    orders = [mm.Order('a', 0, 'sell', 900, Decimal('-0.02')), mm.Order('b', 0, 'buy', 700, Decimal('0.10')),
              mm.Order('c', 0, 'buy', 400, Decimal('0.01')), mm.Order('a', 1, 'sell', 300, Decimal('0.05')),
              mm.Order('b', 1, 'buy', 333, Decimal('0.30')), mm.Order('c', 2, 'buy', 10, Decimal('-0.04'))]  # no sells
    readings = {('a', 0): -850, ('b', 0): 720, ('c', 0): 380, ('a', 1): -300, ('b', 1): 300, ('c', 2): 10}
    return mm.Book(config, orders, extra_pairs=list(readings)), readings


def test_order_and_slot_frames_hold_the_exact_figures_with_their_time_and_currency():
    book, _ = book_and_readings()
    result = mm.clear(book, engine='plain')
    orders = result.to_dataframe()
    assert list(orders['participant']) == [r.participant for r in result.rows]
    assert all(isinstance(v, Decimal) for v in orders['amount'])
    assert sum(orders['amount']) == Decimal(sum(r.amount for r in result.rows)).scaleb(-5)   # to the last unit
    assert set(orders['currency']) == {'CHF'}
    assert orders['slot_start'].iloc[0] == datetime.datetime(2026, 10, 24, 22, tzinfo=datetime.UTC)
    assert [result.amount(r) for r in result.rows] == list(orders['amount'])
    assert result.price(result.slots[0]) == book.config.level_price(result.slots[0].level)
    slots = result.to_dataframe('slots')
    assert str(slots['price_units'].dtype) == 'Int64' and str(orders['amount_units'].dtype) == 'Int64'  # no float
    assert [str(p) for p in slots['price']] == [str(book.config.level_price(s.level)) if s.level is not None else
                                                 'None' for s in result.slots]
    assert list(slots['slot_start'].dt.strftime('%H:%M')) == ['22:00', '22:15', '22:30']
    assert slots['price_units'].isna().tolist() == [False, False, True]  # slot 2 does not trade: <NA>, not NaN


def test_bill_frames_sum_to_the_bills():
    book, readings = book_and_readings()
    settled = mm.settle(book, readings, engine='plain')
    bills = settled.to_dataframe()
    assert list(bills['total_amount']) == [Decimal(b.total_amount).scaleb(-5) for b in settled.bills]
    rows = settled.to_dataframe('rows')
    assert sum(rows['total_amount']) == sum(bills['total_amount'])
    assert len(settled.to_dataframe('slots')) == len(settled.slots)


def test_a_result_without_its_market_or_an_unknown_table_is_refused():
    book, _ = book_and_readings()
    bare = dataclasses.replace(mm.clear(book, engine='plain'), market=None)
    with pytest.raises(BadParameter, match='pass config='):
        bare.to_dataframe()
    assert len(bare.to_dataframe(config=book.config)) == len(bare.rows)
    with pytest.raises(BadParameter, match='table must be one of orders, slots'):
        bare.to_dataframe('bills', config=book.config)


def test_plots_write_pngs_with_the_market_currency(tmp_path):
    book, _ = book_and_readings()
    figure = mm.plot_market(book, 0, path=tmp_path / 'market.png')
    axes = figure.axes[0]
    assert axes.get_ylabel() == 'price (CHF/kWh)' and '2026-10-24 22:00 UTC' in axes.get_title()
    assert any('clearing: ' in t.get_text() for t in axes.get_legend().get_texts())
    figure = mm.plot_prices(mm.clear(book, engine='plain'), path=tmp_path / 'prices.png')
    assert figure.axes[0].get_ylabel() == 'CHF/kWh'
    assert figure.axes[1].get_xlabel() == 'slot start (UTC), from 2026-10-24 22:00'
    for name in ('market.png', 'prices.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(BadParameter, match='no slot 9'):
        mm.plot_market(book, 9)
