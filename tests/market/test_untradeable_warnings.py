"""Orders whose limit cannot trade (issue 22, problem 11): a generated community's ~1 % of them by
design used to print ten warnings and "971 more" on every clear; now many are one summary line,
a few are still named by file and line, and community schemes (which ignore limits) warn of none."""

import csv

from helpers import cli

TOML = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'


def warnings(stderr):
    return [line for line in stderr.splitlines() if line.startswith('warning:')]


def test_many_untradeable_orders_are_one_line(tmp_path):
    assert cli('generate', '--participants', '150', '--slots', '96', '--out', tmp_path / 'c').returncode == 0
    result = cli('clear', '--orders', tmp_path / 'c/orders.csv', '--config', tmp_path / 'c/market.toml',
                 '--out', tmp_path / 'out', '--engine', 'plain')
    assert result.returncode == 0, result.stderr
    with open(tmp_path / 'out/participants.csv', newline='') as f:
        retailer = [r for r in csv.DictReader(f) if r['status'] == 'retailer']
    sells = sum(1 for r in retailer if r['side'] == 'sell')
    assert len(retailer) > 10
    assert warnings(result.stderr) == [
        f'warning: {tmp_path / "c/orders.csv"}: {len(retailer)} orders cannot trade at any price in the market\'s '
        f'range 0.047..0.139 ({sells} sells above the ceiling 0.139, {len(retailer) - sells} buys below the floor '
        f'0.047); they settle with the retailer (first: line ' + warnings(result.stderr)[0].split('(first: line ')[1]]
    assert 'more orders' not in result.stderr


def test_a_few_untradeable_orders_are_each_named(tmp_path):
    (tmp_path / 'market.toml').write_text(TOML)
    (tmp_path / 'orders.csv').write_text('participant,slot,side,energy_wh,limit_price\nh00,0,buy,100,0.12\n'
                                         'h01,0,sell,100,0.05\nh02,0,sell,100,0.2\nh03,0,buy,50,0.01\n')
    result = cli('clear', '--orders', tmp_path / 'orders.csv', '--config', tmp_path / 'market.toml',
                 '--out', tmp_path / 'out', '--engine', 'plain')
    assert result.returncode == 0, result.stderr
    orders = tmp_path / 'orders.csv'
    assert warnings(result.stderr) == [
        f'warning: {orders}:4: limit_price: h02 sell limit 0.2 is above the ceiling 0.139; '
        'order settled with the retailer',
        f'warning: {orders}:5: limit_price: h03 buy limit 0.01 is below the floor 0.047; '
        'order settled with the retailer']
    (tmp_path / 'readings.csv').write_text('participant,slot,net_wh\nh00,0,100\nh01,0,-100\nh02,0,-100\nh03,0,50\n')
    result = cli('settle', '--orders', orders, '--readings', tmp_path / 'readings.csv', '--config',
                 tmp_path / 'market.toml', '--out', tmp_path / 'sdr', '--engine', 'plain', '--mechanism', 'sdr')
    assert result.returncode == 0 and warnings(result.stderr) == [], result.stderr  # sdr trades every order in full
