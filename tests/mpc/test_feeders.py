"""Per-feeder planned net positions (issue 25, the congestion loop): with feeder_min_cohort = K a
zoned clearing also opens, per zone and slot where at least K counted participants have an order,
their summed planned net import. MPC (one party in this process) equals market.feeders' reference
on random zoned markets; a cheating participant's orders count neither in the sums nor in the cohort; the market
file's key is checked; `clear` writes feeder_positions.csv, which `grid check --positions` reads."""

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.common.errors import InputError
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig, parse_config
from mpc_market.market.feeders import FeederPosition, feeder_positions_plain
from mpc_market.market.gridcheck import load_positions
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc.inprocess import clear_in_process

from helpers import cli, read_rows, run_examples
from malicious import tamper_clients

SMALL = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 50000, zoned=True)

order = st.tuples(st.integers(0, 11), st.integers(0, 2), st.sampled_from(['buy', 'sell']),
                  st.one_of(st.integers(1, 50000), st.sampled_from([1, 50000])),
                  st.sampled_from(['0.05', '0.10', '0.13', '0.15', '0.20', '0.25']))


def book_of(orders, cohort, zones=3):
    """orders: (participant index, slot, side, energy, limit); participant p in zone p mod zones."""
    seen, kept = set(), []
    for p, s, side, e, lim in orders:
        if (p, s) not in seen:
            seen.add((p, s))
            kept.append(Order(f'p{p:02d}', s, side, e, Decimal(lim), zone=f'z{p % zones}'))
    return Book(replace(SMALL, feeder_min_cohort=cohort), kept)


@settings(max_examples=run_examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(order, min_size=1, max_size=30), st.integers(1, 5), st.integers(1, 4))
def test_random_zoned_markets_release_the_reference_positions(orders, cohort, zones):
    book = book_of(orders, cohort, zones)
    plain, secure = clear_plain(book), clear_in_process(book)
    assert secure.feeders == plain.feeders == feeder_positions_plain(book)
    released = {(f.feeder, f.slot): f for f in secure.feeders}
    for zone in book.zones:  # a cell is released exactly when cohort members have an order in that slot
        for slot in book.slots:
            present = [p for p in book.participants if book.zone_of[p] == zone and (p, slot) in book.order_of]
            assert ((zone, slot) in released) == (len(present) >= cohort), (zone, slot, present)
            if (zone, slot) in released:
                assert released[zone, slot].members == len(present)


def test_a_cheating_participant_counts_neither_in_the_sum_nor_in_the_cohort(monkeypatch):
    orders = [(0, 0, 'buy', 400, '0.15'), (3, 0, 'sell', 300, '0.12'), (6, 0, 'buy', 200, '0.18'),
              (9, 0, 'sell', 50000, '0.10'), (1, 0, 'buy', 100, '0.15'), (4, 0, 'buy', 700, '0.15')]
    book = book_of(orders, cohort=3, zones=3)   # z0: p00 p03 p06 p09; z1: p01 p04 (below the cohort)
    cheat = book.participant_index['p09']
    layout = book.layout

    def tamper(node, rows, data):
        if node is None and cheat in rows:  # two one-hot levels: invalid, excluded by the nodes
            data[cheat - rows.start, 0, layout.levels + 1] = 1
        return data
    tamper_clients(monkeypatch, book, tamper)
    secure = clear_in_process(book)
    assert secure.excluded == ['p09']
    assert secure.feeders == feeder_positions_plain(book, excluded={'p09'}) == [
        FeederPosition('z0', 0, 3, 400 - 300 + 200)]  # z1 has 2 members: withheld


@pytest.mark.parametrize('line, key, why', [
    ('feeder_min_cohort = 3\n', 'feeder_min_cohort', 'needs zones = true'),
    ('zones = true\nfeeder_min_cohort = -1\n', 'feeder_min_cohort', 'must be an integer in 0..'),
    ('zones = true\nfeeder_min_cohort = "5"\n', 'feeder_min_cohort', 'must be an integer in 0..'),
    ('flex_pricing = "pay-as-you-like"\n', 'flex_pricing', "must be 'pay-as-clear' or 'pay-as-bid'"),
])
def test_the_market_keys_are_checked(line, key, why):
    """feeder_min_cohort (and the flexibility market's flex_pricing, the other key of issue 25)."""
    text = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n' + line
    with pytest.raises(InputError, match=why) as caught:
        parse_config('market.toml', text)
    assert caught.value.field == key and caught.value.line >= 5


@pytest.mark.slow
def test_clear_writes_the_positions_grid_check_reads(tmp_path):
    (tmp_path / 'market.toml').write_text('[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'
                                          'zones = true\nfeeder_min_cohort = 2\n')
    (tmp_path / 'orders.csv').write_text('participant,slot,side,energy_wh,limit_price,zone\n'
                                         'a,0,buy,500,0.15,F1\nb,0,sell,800,0.11,F1\nb,1,buy,90,0.12,F1\n'
                                         'c,0,buy,300,0.16,F2\n')
    for engine in ('mpc', 'plain'):
        out = cli('clear', '--engine', engine, '--orders', tmp_path / 'orders.csv', '--config',
                  tmp_path / 'market.toml', '--out', tmp_path / engine, check=True)
        assert 'feeder_positions.csv (1 zones of at least 2 participants)' in out.stdout, out.stdout
    assert (tmp_path / 'mpc' / 'feeder_positions.csv').read_text() == \
        (tmp_path / 'plain' / 'feeder_positions.csv').read_text()
    # slot 1 has one order in F1 (b's 90 Wh): withheld, or it would publish b's position
    assert read_rows(tmp_path / 'mpc' / 'feeder_positions.csv') == [
        {'feeder': 'F1', 'slot': '0', 'slot_start': '', 'members': '2', 'net_wh': '-300'}]
    positions = load_positions(str(tmp_path / 'mpc' / 'feeder_positions.csv'))
    assert positions.kind == 'feeder' and positions.wh == {('F1', 0): -300}
