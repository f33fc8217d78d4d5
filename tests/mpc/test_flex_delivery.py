"""Delivery and settlement of flexibility under MPC (issue 25, docs/flexibility.md): the delivery
session (mpc.flex.settle_delivery over the energy orders' shares, the settlement's meter packages
and the clearing's kept result shares) equals market.flex.settle_flex_plain exactly, with one MPC
party in this process on random rounds (hypothesis) and on three node processes (slow), an
under-delivery and a missing reading included; at most two comparisons per (participant, slot) of
the clearing and none outside it."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mpc_market.market.book import Book
from mpc_market.market.flex import FlexMarket, FlexOffer, FlexRequest, clear_flex_plain, flex_bills, settle_flex_plain
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.market.settlement import deviation_price2
from mpc_market.mpc.flex_local import settle_flex_mpc
from tests.market.test_flex_rule import CONFIG, SMALL, energy_book, markets, worked_market

from helpers import run_examples


def prices(config, orders):
    return {s.slot: deviation_price2(config, s) for s in clear_plain(Book(config, orders)).slots}


def reference(market, orders, readings):
    result = clear_flex_plain(market)
    return result, settle_flex_plain(market, result, orders, readings, prices(market.config, orders))


def assert_same(secure, plain):
    """The same clearing (its stats aside: the engines' figures differ) and the same settlement."""
    (result, settled), (plain_result, plain_settled) = secure, plain
    assert (result.requests, result.activations, result.excluded) == \
        (plain_result.requests, plain_result.activations, plain_result.excluded)
    assert settled == plain_settled


def worked_round():
    """Worked example 3: h1 under-delivers (metered 1800 of a planned 3000, 2000 up activated), h5
    over-delivers, h7 sent no reading (nothing delivered, its deviation by the missing-reading rule)."""
    market = worked_market()
    result = clear_flex_plain(market)
    readings = {('h1', 0): 1800, ('h5', 0): -6000}
    readings.update({(a.participant, 0): -a.activated_wh for a in result.activations
                     if a.activated_wh and a.participant not in ('h1', 'h5', 'h7')})
    return market, energy_book().orders, readings


def check_worked(secure):
    result, settled = secure
    rows = {d.participant: d for d in settled.deliveries}
    assert (rows['h1'].delivered_wh, rows['h1'].payment, rows['h1'].penalty) == (1200, 1200 * 15, 800 * 20)
    assert (rows['h5'].delivered_wh, rows['h5'].penalty) == (4000, 0)
    assert (rows['h7'].net_wh, rows['h7'].delivered_wh, rows['h7'].penalty) == (None, 0, 1000 * 20)
    imbalance = {i.participant: i for i in settled.imbalances}
    assert (imbalance['h1'].deviation_wh, imbalance['h1'].amount) == (800, 800 * 30)
    assert imbalance['h5'].amount == 0
    bills = {b.participant: b for b in flex_bills({'h1': 2000 * 25, 'h5': -2000 * 25}, settled)}
    assert (bills['h1'].flex_revenue, bills['h1'].flex_penalty, bills['h1'].total_amount) == \
        (18000, 16000, 50000 + 24000 - 18000 + 16000)


def test_worked_under_delivery_in_process():
    market, orders, readings = worked_round()
    secure = settle_flex_mpc(market, orders, readings, prices(CONFIG, orders), in_process=True)
    assert_same(secure, reference(market, orders, readings))
    check_worked(secure)


@st.composite
def rounds(draw):
    """A random flexibility market with random energy orders and readings (some missing)."""
    market = draw(markets())
    people = sorted({o.participant for o in market.offers} | {'x', 'y'})
    orders = [Order(p, s, draw(st.sampled_from(['buy', 'sell'])), draw(st.integers(1, SMALL.max_order_wh)),
                    Decimal(draw(st.sampled_from(['0.10', '0.14', '0.20']))))
              for p in people for s in range(2) if draw(st.integers(0, 2)) == 0]
    readings = {(p, s): draw(st.integers(-7000, 7000)) for p in people for s in range(2) if draw(st.booleans())}
    return market, orders, readings


def offer_slot_without_orders():
    """Found by hypothesis in CI: an owner offers in slot 0 only, requests cover slots 0 and 1, and
    nobody orders or reads in slot 1 (the clearing's rows cover it, the delivery session's must too)."""
    market = FlexMarket(SMALL, tuple(FlexRequest(f'aggregator{s}down', 'aggregator', '', s, 'down', 1,
                                                 Decimal('0.05'), Decimal('0.10')) for s in (0, 1)),
                        (FlexOffer('p2', 0, 'up', 1, Decimal('0.05')),), {p: 'F0' for p in ('p0', 'p1', 'p2', 'p3')})
    orders = [Order(p, 0, 'buy', 1, Decimal('0.10')) for p in ('p2', 'y')]
    return market, orders, {}


@settings(max_examples=run_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
@example(offer_slot_without_orders())
def test_in_process_equals_the_reference(round_):
    market, orders, readings = round_
    assert_same(settle_flex_mpc(market, orders, readings, prices(SMALL, orders), chunk=4, in_process=True),
                reference(market, orders, readings))


def test_two_comparisons_per_pair_of_the_clearing_none_outside(monkeypatch):
    from mpc_market.mpc import flex, primitives
    compared = []
    original, rows = primitives.less_than_zero, flex.flex_rows

    async def counting(values, bits):
        compared.append(getattr(values, 'size', 1))
        return await original(values, bits)

    def marked(*args):  # the delivery session maps the kept shares first
        compared.append('delivery')
        return rows(*args)
    monkeypatch.setattr(primitives, 'less_than_zero', counting)
    monkeypatch.setattr(flex, 'flex_rows', marked)

    def session(readers):
        market, orders, readings = worked_round()
        readings.update({(f'z{i}', 0): 500 for i in range(readers)})  # readers outside the clearing
        compared.clear()
        settle_flex_mpc(market, orders, readings, prices(CONFIG, orders), in_process=True)
        return compared[compared.index('delivery') + 1:]
    few, many = session(1), session(6)
    # the 8 offer owners in slot 0: two comparisons each; the readers outside none (their packages'
    # witnesses give the sign); the rest is the energy rule's, per slot (the divisions' digits)
    assert few[:2] == [8, 8] and few == many


@pytest.mark.slow
def test_worked_under_delivery_on_node_processes():
    market, orders, readings = worked_round()
    secure = settle_flex_mpc(market, orders, readings, prices(CONFIG, orders), timeout=300)
    assert_same(secure, reference(market, orders, readings))
    check_worked(secure)
