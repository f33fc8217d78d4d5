"""`mpc-market clear` and `settle` on a market with a negative floor (issue 24): negative limits are
orders like any other, and every amount printed and written is the hand-computed signed figure, in
the market's currency (summary.json's units; the CSV headers stay bare column names)."""

import csv
import json

import pytest

from helpers import cli

MARKET = '[market]\nprice_floor = -0.50\nprice_ceiling = 0.30\ntick = 0.01\ncurrency = "CHF"\n'
# slot 0: the sell at -0.20 meets the buy at -0.10 at level 30 (price -0.20); the buy at -0.40 is
# below the crossing. slot 1: a sell alone. slot 2: a sell alone, meters off by odd amounts.
ORDERS = ('participant,slot,side,energy_wh,limit_price\n'
          's1,0,sell,1000,-0.20\nb1,0,buy,600,-0.1\nb2,0,buy,200,-0.40\n'
          's1,1,sell,200,-0.45\nc1,2,sell,300,-0.50\n')
READINGS = ('participant,slot,net_wh\n'
            's1,0,-1100\nb1,0,650\nb2,0,200\n'    # s1 long 100, b1 short 50
            's1,1,-150\n'                          # s1 short 50
            'c1,2,-307\nc2,2,3\nc3,2,-2\n')       # long 7, short 3, long 2

ENGINES = [pytest.param('plain', id='plain'), pytest.param('mpc', id='mpc', marks=pytest.mark.slow)]


def rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


@pytest.fixture
def market(tmp_path):
    for name, text in (('market.toml', MARKET), ('orders.csv', ORDERS), ('readings.csv', READINGS)):
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize('engine', ENGINES)
def test_clear_writes_signed_amounts(market, engine):
    result = cli('clear', '--orders', market / 'orders.csv', '--config', market / 'market.toml',
                 '--out', market / 'out', '--engine', engine, '--quiet')
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith('prices in CHF/kWh, amounts in CHF')
    assert rows(market / 'out/public.csv') == [
        {'slot': '0', 'slot_start': '', 'price': '-0.20', 'traded_wh': '600', 'residual_wh': '0'},
        {'slot': '1', 'slot_start': '', 'price': '', 'traded_wh': '0', 'residual_wh': '0'},
        {'slot': '2', 'slot_start': '', 'price': '', 'traded_wh': '0', 'residual_wh': '0'}]
    amounts = {(r['participant'], r['slot']): (r['matched_wh'], r['amount'])
               for r in rows(market / 'out/participants.csv')}
    # 10^-5 CHF: s1 sells 600 Wh at -0.20 (pays 0.12) and exports 400 Wh to the retailer at the floor
    # -0.50 (pays 0.20); b1 is paid 600 Wh x 0.20; b2 buys 200 Wh at the ceiling 0.30
    assert amounts == {('s1', '0'): ('600', '0.32000'), ('b1', '0'): ('600', '-0.12000'),
                       ('b2', '0'): ('0', '0.06000'), ('s1', '1'): ('0', '0.10000'), ('c1', '2'): ('0', '0.15000')}
    summary = json.loads((market / 'out/summary.json').read_text())
    assert summary['units'] == {'currency': 'CHF', 'price': 'CHF/kWh', 'amount': 'CHF', 'energy': 'Wh'}
    assert (market / 'out/participants.csv').read_text().startswith(
        'participant,slot,slot_start,side,energy_wh,matched_wh,unmatched_wh,amount,status\n')


@pytest.mark.parametrize('engine', ENGINES)
def test_settle_writes_signed_deviation_amounts(market, engine):
    result = cli('settle', '--orders', market / 'orders.csv', '--readings', market / 'readings.csv',
                 '--config', market / 'market.toml', '--out', market / 'out', '--engine', engine, '--quiet')
    assert result.returncode == 0, result.stderr
    deviation = {(r['participant'], r['slot']): (r['deviation_wh'], r['deviation_amount'])
                 for r in rows(market / 'out/participants.csv')}
    # slot 0 at price -0.20: b1 short 50 is paid 50 x 0.20; s1 long 100: 50 netted at -0.20 and 50 at
    # the floor -0.50 (pays 0.035). slot 1 (no trade: (floor + ceiling)/2 = -0.10): s1 short 50, nobody
    # long, at the ceiling. slot 2 at -0.10: c2 short 3 paid 3 x 0.10; long 9 = 3 at -0.10 + 6 at -0.50,
    # c1's 7/9 of 0.0033 is 0.0025666.. and c3's 2/9 0.0007333..: each rounded up (the reference's floor)
    assert deviation == {('s1', '0'): ('-100', '0.03500'), ('b1', '0'): ('50', '-0.01000'),
                         ('b2', '0'): ('0', '0.00000'), ('s1', '1'): ('50', '0.01500'),
                         ('c1', '2'): ('-7', '0.00257'), ('c2', '2'): ('3', '-0.00030'),
                         ('c3', '2'): ('-2', '0.00074')}
    retailer = rows(market / 'out/retailer.csv')
    assert [(r['receives'], r['pays'], r['rounding_residue'], r['net']) for r in retailer] == [
        ('0.00000', '-0.02500', '0.00000', '0.02500'), ('0.01500', '0.00000', '0.00000', '0.01500'),
        ('0.00000', '-0.00300', '0.00001', '0.00301')]
    bills = {b['participant']: b for b in rows(market / 'out/bills.csv')}
    assert (bills['s1']['trade_amount'], bills['s1']['deviation_amount'], bills['s1']['total_amount']) == \
        ('0.42000', '0.05000', '0.47000')
    # without the market: s1 exports 1250 Wh at the floor -0.50 (pays 0.625), so it saves 0.155
    assert (bills['s1']['retailer_only_amount'], bills['s1']['saving']) == ('0.62500', '0.15500')
    assert (bills['c2']['total_amount'], bills['c2']['retailer_only_amount']) == ('-0.00030', '0.00090')
    assert sum(int(b['saving'].replace('.', '')) for b in bills.values()) == 48239
    assert 'deviations net 0.04301 CHF to the retailer; community saving 0.48239 CHF against' in \
        result.stdout.splitlines()[-2]
    assert json.loads((market / 'out/summary.json').read_text())['units']['amount'] == 'CHF'
