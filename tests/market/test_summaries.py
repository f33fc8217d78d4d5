"""The summary line of ``clear`` / ``settle`` tells what traded as each mechanism defines it, and its
figures are the CSVs' (issue 22, problem 5: ``settle --mechanism sdr|mmr|bill-sharing`` said
"0 slots traded 0 Wh locally" though every order trades in full)."""

import csv
import re

import pytest

from helpers import cli

SCHEMES = ('sdr', 'mmr', 'bill-sharing')


@pytest.fixture(scope='module')
def community(tmp_path_factory):
    root = tmp_path_factory.mktemp('summaries')
    assert cli('generate', '--participants', '40', '--slots', '4', '--out', root / 'one').returncode == 0
    assert cli('generate', '--participants', '40', '--slots', '4', '--zones', '3', '--out',
               root / 'zoned').returncode == 0
    return root


def rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def numbers(line, pattern):
    match = re.search(pattern, line)
    assert match, (pattern, line)
    return [int(g) for g in match.groups()]


def retailer_of_unmatched(participants):
    return [sum(int(r['unmatched_wh']) for r in participants if r['side'] == side) for side in ('buy', 'sell')]


def settle(community, out, mechanism, engine='plain', market='one'):
    result = cli('settle', '--orders', community / market / 'orders.csv', '--readings',
                 community / market / 'readings.csv', '--config', community / market / 'market.toml',
                 '--out', out, '--mechanism', mechanism, '--engine', engine, '--quiet')
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[0]


@pytest.mark.parametrize('mechanism,engine', [(m, 'plain') for m in SCHEMES]
                         + [pytest.param('sdr', 'mpc', marks=pytest.mark.slow)])  # MPyC node processes
def test_scheme_summary_is_what_the_community_matched(community, tmp_path, mechanism, engine):
    line = settle(community, tmp_path, mechanism, engine)
    participants = [r for r in rows(tmp_path / 'participants.csv') if r['status'] == 'cleared']
    assert participants and all(r['matched_wh'] == r['energy_wh'] for r in participants)  # every order in full
    supply, demand = {}, {}
    for r in participants:
        side = supply if r['side'] == 'sell' else demand
        side[r['slot']] = side.get(r['slot'], 0) + int(r['energy_wh'])
    slots = set(supply) | set(demand)
    local = {s: min(supply.get(s, 0), demand.get(s, 0)) for s in slots}
    shortfall = sum(max(demand.get(s, 0) - supply.get(s, 0), 0) for s in slots)
    surplus = sum(max(supply.get(s, 0) - demand.get(s, 0), 0) for s in slots)
    assert sum(local.values()) > 0
    assert f'{mechanism}: every order trades in full' in line
    assert numbers(line, r'(\d+) slots matched (\d+) Wh within the community') == \
        [sum(1 for v in local.values() if v), sum(local.values())]
    assert numbers(line, r'the retailer supplied (\d+) Wh and took (\d+) Wh') == [shortfall, surplus]
    assert len(rows(tmp_path / 'public.csv')) == len(slots)


def test_double_auction_summary_is_public_csv_and_participants_csv(community, tmp_path):
    line = settle(community, tmp_path, 'double-auction')
    public = rows(tmp_path / 'public.csv')
    traded = [int(r['traded_wh']) for r in public]
    assert numbers(line, r'(\d+) slots traded (\d+) Wh locally at the clearing price') == \
        [sum(1 for t in traded if t), sum(traded)]
    residual = sum(int(r['residual_wh']) for r in public)
    assert (f'({residual} Wh of it from or to the retailer' in line) == (residual > 0)
    assert numbers(line, r'with the retailer: (\d+) Wh imported, (\d+) Wh exported') == \
        retailer_of_unmatched(rows(tmp_path / 'participants.csv'))


def test_zoned_summary_splits_zones_and_the_cross_auction(community, tmp_path):
    result = cli('clear', '--orders', community / 'zoned/orders.csv', '--config', community / 'zoned/market.toml',
                 '--out', tmp_path, '--engine', 'plain', '--quiet')
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    public = rows(tmp_path / 'public.csv')
    within = sum(int(r['traded_wh']) for r in public if r['market'].startswith('zone:'))
    across = sum(int(r['traded_wh']) for r in public if r['market'] == 'cross')
    fees = [r['fee_amount'] for r in public if r['market'] == 'network-operator']
    assert numbers(line, r'traded (\d+) Wh within zones and (\d+) Wh across zones') == [within, across]
    from decimal import Decimal
    assert f'network fees {sum(Decimal(f) for f in fees):.6f}' in line
    assert numbers(line, r'with the retailer: (\d+) Wh imported, (\d+) Wh exported') == \
        retailer_of_unmatched(rows(tmp_path / 'participants.csv'))


def test_clear_of_a_scheme_market_file(community, tmp_path):
    """clear takes the mechanism from the market file: the same line as settle."""
    market = (community / 'one/market.toml').read_text().replace('[market]\n', '[market]\nmechanism = "mmr"\n')
    (tmp_path / 'market.toml').write_text(market)
    result = cli('clear', '--orders', community / 'one/orders.csv', '--config', tmp_path / 'market.toml',
                 '--out', tmp_path / 'out', '--engine', 'plain', '--quiet')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == settle(community, tmp_path / 'settled', 'mmr')
