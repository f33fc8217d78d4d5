"""The flexibility market under MPC equals the plaintext reference exactly (issue 25): random markets
with ties, caps below/inside/above the band, unmet requests, empty feeders and both directions, with
one MPC party in this process (hypothesis); the worked example and malicious offers (negative,
oversize, both directions at once: excluded, the rest clears) on three node processes (slow)."""

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from mpc_market.market.flex import FlexMarket, FlexOffer, FlexRequest, clear_flex_plain
from mpc_market.mpc import field as ff
from mpc_market.mpc.flex import FlexBook
from mpc_market.mpc.flex_local import clear_flex_in_process, clear_flex_mpc
from tests.market.test_flex_rule import SMALL, flex_cli, markets, worked_market

from helpers import run_examples
from malicious import tamper_clients


def assert_same(secure, plain, excluded=()):
    assert secure.requests == plain.requests
    assert secure.activations == plain.activations
    assert secure.excluded == sorted(excluded)


@settings(max_examples=run_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_in_process_equals_the_reference(market):
    assert_same(clear_flex_in_process(market, chunk=8), clear_flex_plain(market))


@pytest.mark.parametrize('pricing', ['pay-as-clear', 'pay-as-bid'])
def test_worked_example_in_process(pricing):
    market = worked_market(pricing)
    assert_same(clear_flex_in_process(market), clear_flex_plain(market))


def test_no_offer_in_a_request_slot_needs_no_computation():
    market = FlexMarket(SMALL, (FlexRequest('a', 'aggregator', '', 5, 'up', 10, Decimal('0.2'), Decimal(0)),),
                        (FlexOffer('p', 1, 'up', 10, Decimal('0.1')),))
    assert_same(clear_flex_in_process(market), clear_flex_plain(market))


def test_offers_are_encoded_on_the_levels_up_to_the_highest_cap():
    # caps 0.13 and 0.15 on a 0.10..0.20 band: levels 0..5, an offer at 0.16 can never be activated
    requests = (FlexRequest('a', 'aggregator', '', 0, 'up', 2500, Decimal('0.13'), Decimal(0)),
                FlexRequest('d', 'dso', 'F', 0, 'down', 700, Decimal('0.15'), Decimal(0)))
    offers = (FlexOffer('p', 0, 'up', 1000, Decimal('0.13')), FlexOffer('q', 0, 'up', 3000, Decimal('0.16')),
              FlexOffer('r', 0, 'down', 800, Decimal('0.15')), FlexOffer('s', 0, 'down', 900, Decimal('0.151')))
    market = FlexMarket(SMALL, requests, offers, {'r': 'F', 's': 'F'})
    book = FlexBook(market)
    assert (SMALL.levels, market.levels, book.layout.levels) == (11, 6, 6)
    spec = book.spec(3, 64)
    assert (spec.levels, spec.ceiling_units) == (6, spec.floor_units + 5 * spec.tick_units)
    above = book.layout.sell_out
    positions = [book.position_array[book.participant_index[o.participant], 0] for o in offers]
    assert positions == [3, above, 6 + 5, above + 1]
    plain = clear_flex_plain(market)
    assert [a.activated_wh for a in plain.activations] == [1000, 0, 700, 0]
    assert_same(clear_flex_in_process(market), plain)
    # without requests (the aggregator's curve) every level of the band
    assert FlexMarket(SMALL, (), offers).levels == 11
    # caps all below the floor: one level, nothing procured
    low = replace(market, requests=tuple(replace(r, price_cap=Decimal('0.05')) for r in requests))
    assert low.levels == 1
    assert_same(clear_flex_in_process(low), clear_flex_plain(low))


def negative_price_market():
    """A market whose floor is negative: offers and caps below zero, payments signed."""
    config = replace(SMALL, price_floor=Decimal('-0.10'))
    offers = (FlexOffer('a', 0, 'up', 900, Decimal('-0.05')), FlexOffer('b', 0, 'up', 900, Decimal('-0.05')),
              FlexOffer('c', 0, 'down', 500, Decimal('0.03')), FlexOffer('d', 0, 'up', 100, Decimal('-0.20')))
    requests = (FlexRequest('u', 'aggregator', '', 0, 'up', 1001, Decimal('0'), Decimal(0)),
                FlexRequest('w', 'dso', 'F', 0, 'down', 300, Decimal('0.05'), Decimal(0)))
    return FlexMarket(config, requests, offers, {'c': 'F'})


def test_negative_prices_in_process():
    market = negative_price_market()
    plain = clear_flex_plain(market)
    assert any(a.payment < 0 for a in plain.activations)
    assert_same(clear_flex_in_process(market), plain)


# -- malicious offers ---------------------------------------------------------------------------
CHEATS = ('x_twoway', 'x_oversize', 'x_negative')


def cheating_market():
    honest = worked_market()
    cheats = tuple(FlexOffer(c, 0, 'up', 1000, Decimal('0.05')) for c in CHEATS)
    return replace(honest, offers=honest.offers + cheats), honest


def tamper_plain(book, rows, data):
    """The cheating owners' vectors: an up and a down offer at once, 70000 Wh (max_order_wh is
    65535, bits and slack made to match), and -1200 Wh (the field's p - 1200)."""
    layout, k = book.layout, book.layout.levels
    for name in CHEATS:
        i = book.participant_index[name]
        if i not in rows:
            continue
        r = list(rows).index(i)
        if name == 'x_twoway':
            data[r, 0, k + 3] = 1
            data[r, 0, layout.weighted.start + k + 3] = 1000
        elif name == 'x_oversize':
            energy = 70000
            data[r, 0, layout.weighted.start] = energy
            data[r, 0, layout.bits] = [(energy >> b) & 1 for b in range(layout.energy_bits)]
            data[r, 0, layout.slack] = 0
    return data


def negative_shares(book, rows, data):
    """x_negative's energy column shifted by -2200 in the field: it offers -1200 Wh."""
    i = book.participant_index['x_negative']
    if i in rows:
        r = list(rows).index(i)
        column = book.layout.weighted.start
        value = int(ff.to_ints(data[:, r, 0, column]))
        data[:, r, 0, column] = ff.from_ints(np.array((value - 2200) % ff.MODULUS, dtype=object))
    return data


def check_cheats_excluded(clear, monkeypatch):
    market, honest = cheating_market()
    book = FlexBook(market)

    def tamper(node, rows, data):  # node None: the owners' vectors; else the shares sent to that node
        return tamper_plain(book, rows, data) if node is None else negative_shares(book, rows, data)

    tamper_clients(monkeypatch, book, tamper)
    secure = clear(market, book=book)
    plain = clear_flex_plain(honest)
    assert secure.requests == plain.requests
    assert secure.activations[:len(plain.activations)] == plain.activations
    assert secure.excluded == sorted(CHEATS)
    assert all(a.activated_wh == 0 for a in secure.activations[len(plain.activations):])


def test_malicious_offers_are_excluded_in_process(monkeypatch):
    check_cheats_excluded(clear_flex_in_process, monkeypatch)


@pytest.mark.slow
def test_node_processes_equal_the_reference_on_the_worked_example():
    market = worked_market('pay-as-bid')
    assert_same(clear_flex_mpc(market, timeout=300), clear_flex_plain(market))


@pytest.mark.slow
def test_node_processes_on_edge_cases():
    """Ties at the margin, an unmet request, an empty feeder, a cap below the floor, both directions
    and a market with a negative floor."""
    offers = (FlexOffer('a', 0, 'up', 3000, Decimal('0.12')), FlexOffer('b', 0, 'up', 3000, Decimal('0.12')),
              FlexOffer('c', 0, 'up', 1, Decimal('0.12')), FlexOffer('d', 0, 'down', 3000, Decimal('0.10')),
              FlexOffer('e', 1, 'down', 3000, Decimal('0.30')), FlexOffer('a', 1, 'up', 2000, Decimal('0.11')))
    requests = (FlexRequest('tie', 'dso', 'F0', 0, 'up', 4001, Decimal('0.15'), Decimal('0.10')),
                FlexRequest('unmet', 'aggregator', '', 0, 'down', 9000, Decimal('0.20'), Decimal('0.10')),
                FlexRequest('empty', 'dso', 'F9', 1, 'up', 100, Decimal('0.20'), Decimal('0.10')),
                FlexRequest('low', 'aggregator', '', 1, 'up', 100, Decimal('0.01'), Decimal('0.10')),
                FlexRequest('above', 'aggregator', '', 1, 'down', 100, Decimal('0.20'), Decimal('0.10')))
    market = FlexMarket(SMALL, requests, offers, {'a': 'F0', 'b': 'F0', 'c': 'F0', 'd': 'F0'})
    plain = clear_flex_plain(market)
    assert [r.procured_wh for r in plain.requests] == [4000, 3000, 0, 0, 0]
    assert_same(clear_flex_mpc(market, timeout=300), plain)
    negative = negative_price_market()
    assert_same(clear_flex_mpc(negative, timeout=300), clear_flex_plain(negative))


@pytest.mark.slow
def test_malicious_offers_are_excluded_on_node_processes(monkeypatch):
    check_cheats_excluded(lambda market, book: clear_flex_mpc(market, timeout=300, book=book), monkeypatch)


@pytest.mark.slow
def test_cli_worked_examples_under_mpc_equal_the_reference(tmp_path):
    """The three worked examples through `mpc-market flex settle`: every file the same as plain's."""
    plain = flex_cli(tmp_path, 'plain', tmp_path / 'plain')
    secure = flex_cli(tmp_path, 'mpc', tmp_path / 'mpc')
    assert secure.stdout.replace(str(tmp_path / 'mpc'), '') == plain.stdout.replace(str(tmp_path / 'plain'), '')
    for name in ('requests.csv', 'activations.csv', 'deliveries.csv', 'imbalances.csv', 'bills.csv'):
        assert (tmp_path / 'mpc' / name).read_text() == (tmp_path / 'plain' / name).read_text()
