"""Bad input files and command-line values: exit status 2, one error line, nothing written."""

import argparse
import json
import os
import time

import pytest

from mpc_market.cli.options import bounded_int, bounded_seconds, day_text, decimal_text, slot_list
from mpc_market.common.errors import InputError
from mpc_market.common.limits import SLOT_ID_MAX

from helpers import cli

GOOD_TOML = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
HEADER = 'participant,slot,side,energy_wh,limit_price\n'


def clear(tmp_path, orders_text, toml_text=GOOD_TOML, orders_name='orders.csv', engine='plain'):
    orders = tmp_path / orders_name
    orders.write_text(orders_text)
    config = tmp_path / 'market.toml'
    config.write_text(toml_text)
    out = tmp_path / 'out'
    proc = cli('clear', '--orders', str(orders), '--config', str(config), '--out', str(out), '--engine', engine)
    return proc, orders, config, out


@pytest.mark.parametrize('body, line, field', [
    ('participant,slot,side,energy_wh\nalice,0,buy,5\n', 1, 'limit_price'),
    (HEADER + 'alice,0,bye,5,0.1\n', 2, 'side'),
    (HEADER + 'alice,0,buy,5.5,0.1\n', 2, 'energy_wh'),
    (HEADER + 'alice,0,buy,0,0.1\n', 2, 'energy_wh'),
    (HEADER + 'alice,0,buy,65536,0.1\n', 2, 'energy_wh'),
    (HEADER + 'alice,0,buy,-3,0.1\n', 2, 'energy_wh'),
    (HEADER + 'alice,0,buy,5,cheap\n', 2, 'limit_price'),
    (HEADER + 'alice,0,buy,5,-10.01\n', 2, 'limit_price'),   # below -10 (negative limits: test_negative_prices_cli)
    (HEADER + 'alice,x,buy,5,0.1\n', 2, 'slot'),
    (HEADER + 'alice,-1,buy,5,0.1\n', 2, 'slot'),
    (HEADER + 'al ice,0,buy,5,0.1\n', 2, 'participant'),
    (HEADER + 'alice,0,buy,5,0.1\nbob,0,sell,5,0.1\nalice,0,sell,7,0.1\n', 4, 'participant'),
    (HEADER + 'alice,0,buy,5\n', 2, 'row'),
    ('', 1, 'file'),
    (HEADER, 2, 'file'),
])
def test_bad_orders(tmp_path, body, line, field):
    proc, orders, _, out = clear(tmp_path, body)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in proc.stderr
    assert lines[0].startswith(f'error: {orders}:{line}: {field}: '), lines[0]
    assert not out.exists()


@pytest.mark.parametrize('toml_text, line, field', [
    ('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.0007\n', 4, 'tick'),
    ('[market]\nprice_floor = 0.047\nprice_ceiling = \ntick = 0.001\n', 3, 'toml'),
    ('[market]\nprice_floor = 0.047\ntick = 0.001\n', 1, 'price_ceiling'),
    ('[market]\nprice_floor = 0.2\nprice_ceiling = 0.1\ntick = 0.001\n', 3, 'price_ceiling'),
    ('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0\n', 4, 'tick'),
    ('[market]\nprice_floor = "x"\nprice_ceiling = 0.139\ntick = 0.001\n', 2, 'price_floor'),
    (GOOD_TOML + 'max_order_wh = 0\n', 5, 'max_order_wh'),
    (GOOD_TOML + 'tickk = 1\n', 5, 'tickk'),
    ('[other]\n', 1, 'market'),
])
def test_bad_config(tmp_path, toml_text, line, field):
    proc, _, config, out = clear(tmp_path, HEADER + 'alice,0,buy,5,0.1\n', toml_text)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {config}:{line}: {field}: '), lines
    assert not out.exists()


def test_json_orders_accepted_and_errors_have_lines(tmp_path):
    good = [{'participant': 'a', 'slot': 0, 'side': 'sell', 'energy_wh': 100, 'limit_price': 0.05},
            {'participant': 'b', 'slot': 0, 'side': 'buy', 'energy_wh': 60, 'limit_price': '0.1'}]
    proc, _, _, out = clear(tmp_path, json.dumps(good, indent=1), orders_name='orders.json')
    assert proc.returncode == 0, proc.stderr
    assert (out / 'public.csv').read_text().splitlines()[1] == '0,,0.050,60,0'
    bad = good + [{'participant': 'c', 'slot': 0, 'side': 'buy', 'energy_wh': 'lots', 'limit_price': 0.1}]
    text = '[\n' + ',\n'.join(json.dumps(o) for o in bad) + '\n]\n'
    proc, orders, _, _ = clear(tmp_path, text, orders_name='orders.json')
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {orders}:4: energy_wh: 'lots' is not an integer (at most 18 digits)"


def test_untradeable_orders_warn_their_owner(tmp_path):
    proc, orders, _, out = clear(tmp_path, HEADER + 'a,0,sell,5,0.5\nb,0,buy,5,0.1\n')
    assert proc.returncode == 0
    assert f'warning: {orders}:2: limit_price: a sell limit 0.5 is above the ceiling' in proc.stderr
    assert 'a,0,,sell,5,0,5,-0.000235,retailer' in (out / 'participants.csv').read_text()


def test_existing_outputs_untouched_on_error(tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'public.csv').write_text('old')
    proc, _, _, _ = clear(tmp_path, HEADER + 'alice,0,buy,5,0.1\nalice,0,buy,5,0.1\n')
    assert proc.returncode == 2
    assert (out / 'public.csv').read_text() == 'old'
    assert sorted(os.listdir(out)) == ['public.csv']


READINGS_HEADER = 'participant,slot,net_wh\n'


def settle(tmp_path, orders_text, readings_text, *extra):
    (tmp_path / 'orders.csv').write_text(orders_text)
    (tmp_path / 'readings.csv').write_text(readings_text)
    (tmp_path / 'market.toml').write_text(GOOD_TOML)
    out = tmp_path / 'out'
    proc = cli('settle', '--orders', str(tmp_path / 'orders.csv'), '--readings', str(tmp_path / 'readings.csv'),
                   '--config', str(tmp_path / 'market.toml'), '--out', str(out), '--engine', 'plain', *extra)
    return proc, out


@pytest.mark.parametrize('readings, file, line, field', [
    (READINGS_HEADER + 'a,0,12\nb,0,1.5\n', 'readings.csv', 3, 'net_wh'),
    (READINGS_HEADER + 'a,0,12\nb,0,70000\n', 'readings.csv', 3, 'net_wh'),
    (READINGS_HEADER + 'a,0,12\na,0,13\nb,0,1\n', 'readings.csv', 3, 'participant'),
    ('participant,net_wh\n', 'readings.csv', 1, 'slot'),
])
def test_bad_readings(tmp_path, readings, file, line, field):
    proc, out = settle(tmp_path, HEADER + 'a,0,buy,10,0.1\nb,0,sell,10,0.05\n', readings)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith(f'error: {tmp_path / file}:{line}: {field}: '), proc.stderr
    assert not out.exists()


def test_an_order_without_reading_is_settled_by_the_missing_reading_rule(tmp_path):
    proc, out = settle(tmp_path, HEADER + 'a,0,buy,10,0.1\nb,0,sell,10,0.05\n', READINGS_HEADER + 'a,0,12\n')
    assert proc.returncode == 0, proc.stderr
    assert 'note: 1 orders have no meter reading (first: b in slot 0)' in proc.stderr
    rows = {r.split(',')[0]: r for r in (out / 'participants.csv').read_text().splitlines()[1:]}
    assert rows['b'].endswith(',0,10,0.001390,0.000890')  # sold 10 Wh, delivered none: short 10 Wh at the ceiling


def test_settle_writes_bills(tmp_path):
    proc, out = settle(tmp_path, HEADER + 'a,0,buy,10,0.1\nb,0,sell,10,0.05\n',
                       READINGS_HEADER + 'a,0,12\nb,0,-10\nc,0,5\n')
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(out)) == ['bills.csv', 'participants.csv', 'public.csv', 'retailer.csv', 'summary.json']
    bills = (out / 'bills.csv').read_text().splitlines()
    assert bills[0] == 'participant,trade_amount,deviation_amount,total_amount,retailer_only_amount,saving'
    # a bought 10 Wh at 0.05, used 12: 2 Wh short, nobody long -> 2 Wh at the ceiling 0.139
    assert bills[1] == 'a,0.000500,0.000278,0.000778,0.001668,0.000890'
    assert 'c,0,,,0,0,0,0.000000,no-order,5,5,0.000695,0.000695' in (out / 'participants.csv').read_text()
    proc, out = settle(tmp_path, HEADER + 'a,0,buy,10,0.1\nb,0,sell,10,0.05\n',
                       READINGS_HEADER + 'a,0,12\nb,0,-10\n', '--mechanism', 'mmr')
    assert (out / 'public.csv').read_text().splitlines() == ['slot,slot_start,buy_price,sell_price', '0,,0.093,0.093']


def _options(parser, path='mpc-market'):
    """(command path, action) of every option of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f'{path} {name}')
        else:
            yield path, action


def test_no_option_takes_an_unbounded_number():
    """int and float take '1e300', 'nan', 'inf', '٣' and 9223372036854775808: every numeric option of
    every command goes through a bounded parser of cli/options.py instead."""
    from mpc_market.cli.main import build_parser
    options = list(_options(build_parser()))
    unbounded = [f'{path} {"/".join(a.option_strings) or a.dest}' for path, a in options if a.type in (int, float)]
    assert not unbounded, unbounded
    assert sum(1 for _, a in options if getattr(a.type, '__qualname__', '').startswith('bounded_')) >= 30


@pytest.mark.parametrize('parse, text, value', [
    (bounded_int(3, 7), '7', 7), (bounded_int(3, 7), ' 3 ', 3),
    (bounded_int(0, SLOT_ID_MAX), str(SLOT_ID_MAX), SLOT_ID_MAX),
    (bounded_seconds(0), '1.5', 1.5), (bounded_seconds(0), '.5', 0.5), (bounded_seconds(0), '1e3', 1000.0),
    (slot_list, '0-3,7', [0, 1, 2, 3, 7]), (slot_list, '46-49', [46, 47, 48, 49]), (slot_list, '5', [5]),
    (day_text, '2028-02-29', '2028-02-29'), (decimal_text, '0.010', '0.010'),
])
def test_bounded_options_accept(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize('parse, text', [
    (bounded_int(3, 7), '8'), (bounded_int(3, 7), '2'), (bounded_int(3, 7), '٣'), (bounded_int(3, 7), '1_0'),
    (bounded_int(3, 7), '5.0'), (bounded_int(0, SLOT_ID_MAX), '9' * 5000), (bounded_int(3, 7), ''),
    (bounded_seconds(0), 'nan'), (bounded_seconds(0), 'inf'), (bounded_seconds(0), '-inf'),
    (bounded_seconds(0), '1e999'), (bounded_seconds(0), '1e300'), (bounded_seconds(0), '-0.5'),
    (bounded_seconds(0), '0x10'), (bounded_seconds(0), '١'),
    (slot_list, ''), (slot_list, ','), (slot_list, '-1'), (slot_list, '3-1'), (slot_list, '1,1'), (slot_list, '0-3,3'),
    (slot_list, '٠-٣'), (slot_list, '0-' + str(SLOT_ID_MAX)), (slot_list, str(SLOT_ID_MAX + 1)), (slot_list, '0-10000'),
    (day_text, '2026-13-45'), (day_text, '٢٠٢٦-١٢-٠١'), (day_text, '20261201'),
    (decimal_text, 'nan'), (decimal_text, '1e3'), (decimal_text, '-0.01'), (decimal_text, '0.01\nx = 1'),
])
def test_bounded_options_refuse(parse, text):
    started = time.monotonic()
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)
    assert time.monotonic() - started < 0.1  # a huge range is counted, never expanded


def test_generate_says_its_caps_and_keeps_them(tmp_path):
    """generate --slots 1000000000 ran to 13 GB in 12 s; the caps are in --help and hold in the library too."""
    from mpc_market.common.errors import BadParameter
    from mpc_market.market.generate import MAX_PARTICIPANTS, MAX_SIZE, MAX_SLOTS, write_community
    text = cli('generate', '--help').stdout
    assert all(f'{n}' in ' '.join(text.split()) for n in (MAX_PARTICIPANTS, MAX_SLOTS, MAX_SIZE)), text
    for participants, slots in ((10, MAX_SLOTS + 1), (MAX_PARTICIPANTS + 1, 1), (MAX_SIZE // 96 + 1, 96), (0, 4)):
        with pytest.raises(BadParameter):
            write_community(str(tmp_path / 'c'), participants, slots, 1)
    with pytest.raises(InputError, match='network_fee'):
        write_community(str(tmp_path / 'c'), 10, 1, 1, zones=2, network_fee='0.0105')
    assert not (tmp_path / 'c').exists()  # refused before anything is written
    assert cli('generate', '--participants', '3', '--slots', '2', '--out', tmp_path / 'ok').returncode == 0
