"""The aggregator's view (issue 25, docs/flexibility.md): the community's flexibility curve per slot
and direction, opened only where at least min_cohort participants offer; the reference's rule, the
MPC view equal to it exactly (one party in process, hypothesis), and `flex curve` through the CLI
(plain; mpc on node processes, slow)."""

import csv
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.market.flex import FlexOffer, flex_curve_plain
from mpc_market.mpc.flex_local import flex_curve_mpc
from tests.market.test_flex_rule import CONFIG, SMALL, markets, worked_files

from helpers import run_examples


def test_worked_example_curve():
    offers = [FlexOffer('a', 0, 'up', 1000, Decimal('0.10')), FlexOffer('b', 0, 'up', 500, Decimal('0.10')),
              FlexOffer('c', 0, 'up', 700, Decimal('0.131')), FlexOffer('d', 0, 'up', 900, Decimal('0.40')),
              FlexOffer('e', 0, 'down', 300, Decimal('0.08')), FlexOffer('a', 1, 'down', 200, Decimal('0.06'))]
    curve = flex_curve_plain(CONFIG, offers, 3)
    # slot 0 up: four offer (d above the ceiling counts but adds no volume); the others have one each
    assert curve.opened == {(0, 'up'): True, (0, 'down'): False, (1, 'up'): False, (1, 'down'): False}
    # 0.131 counts at 0.14 (rounded up, as an offer's price)
    assert [(s.level, s.price_units, s.volume_wh) for s in curve.steps] == [(5, 10, 1500), (9, 14, 2200)]
    assert flex_curve_plain(CONFIG, offers, 5).steps == []


def test_curve_of_no_offer_is_empty():
    assert flex_curve_mpc(CONFIG, [], 2, in_process=True) == flex_curve_plain(CONFIG, [], 2)


@settings(max_examples=run_examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.integers(1, 5))
def test_mpc_curve_equals_the_reference(market, min_cohort):
    plain = flex_curve_plain(SMALL, market.offers, min_cohort)
    assert flex_curve_mpc(SMALL, market.offers, min_cohort, chunk=4, in_process=True) == plain
    for (slot, direction), is_open in plain.opened.items():  # the cohort rule itself
        count = sum(o.slot == slot and o.direction == direction for o in market.offers)
        assert is_open == (count >= min_cohort)
        assert is_open or not any((s.slot, s.direction) == (slot, direction) for s in plain.steps)


def curve_rows(tmp_path, engine, min_cohort):
    from helpers import cli
    market, _, offers, *_ = worked_files(tmp_path)
    out = tmp_path / engine
    run = cli('flex', 'curve', '--offers', offers, '--config', market, '--min-cohort', str(min_cohort),
              '--engine', engine, '--out', out, check=True)
    with open(out / 'curve.csv') as f:
        return run, list(csv.DictReader(f))


def test_cli_curve(tmp_path):
    run, rows = curve_rows(tmp_path, 'plain', 8)
    assert '1 curves open, 1 withheld (fewer than 8 offering)' in run.stdout
    up = [(r['price'], r['volume_wh']) for r in rows if r['direction'] == 'up']
    assert up[0] == ('0.08', '4000') and up[-1] == ('0.25', '17600')
    assert [r['open'] for r in rows if r['direction'] == 'down'] == ['no']
    assert rows[0]['slot_start'] == '2026-06-17T00:00:00Z'
    _, withheld = curve_rows(tmp_path, 'plain', 9)
    assert {r['open'] for r in withheld} == {'no'} and {r['volume_wh'] for r in withheld} == {''}


@pytest.mark.slow
def test_cli_curve_mpc_equals_plain(tmp_path):
    for min_cohort in (3, 9):
        assert curve_rows(tmp_path, 'mpc', min_cohort)[1] == curve_rows(tmp_path, 'plain', min_cohort)[1]
