"""Hostile input files: every parser answers with one InputError line (FILE:LINE: field: ...) within
a second, or accepts the file; never a traceback, a hang or a half-written output.

Property-based over orders (CSV and JSON), meter readings, market TOML, deployment TOML and
statistics bundles and submissions: valid templates with one field replaced by hostile values,
and arbitrary text. The CLI cases of the adversarial review run as real commands."""

import json
import re
import time
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.common.errors import InputError
from mpc_market.market.config import MarketConfig, load_config
from mpc_market.market.orders import load_orders
from mpc_market.market.readings import load_readings
from mpc_market.net.config import load_broker_config, load_node_config
from mpc_market.stats.release import load_bundle
from mpc_market.stats.submission import read_submissions

from helpers import cli

CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'))
ERROR_LINE = re.compile(r'^[^\n]+:\d+: [A-Za-z_]+: [^\n]+$')

HOSTILE = st.sampled_from([
    '1e999999999', '1e-999999999', '1e-300', '1e99999999', '9' * 5000, '-' + '9' * 5000, 'x' * 140000, 'nan', 'inf',
    '-0', '', '"', '\x00', '1' * 19, '0.0000000001', '10000000', '[' * 2000, '{' * 2000, '../../etc/passwd',
    '\u202e', '0x10', '1_000', '+5', ' 7 ', '1e5', 'true', 'null'])
FIELD_VALUE = st.one_of(HOSTILE, st.text(max_size=30))

ORDER_ROW = ['h001', '0', 'buy', '100', '0.1']
READING_ROW = ['h001', '0', '-250']
MARKET = {'price_floor': '0.047', 'price_ceiling': '0.139', 'tick': '0.001', 'max_order_wh': '65535'}
NODE = {'index': '0', 'listen': '"127.0.0.1:7101"', 'data_dir': '"d"', 'keys': '"k"', 'connect_timeout_s': '60'}
BUNDLE = {'format': '"mpc-market/aggregates/v1"', 'key_id': '"abc"', 'level': '"feeder"', 'day': '"2026-11-20"',
          'noise': 'null', 'groups': '[{"name": "F1", "zone": "Z1", "meters": 5, "ciphertexts": ["AA=="]}]',
          'refused': '[]'}


def _parse_quietly(parse, path):
    """parse(path) must return or raise InputError with one line naming the file, within 1 s."""
    started = time.monotonic()
    try:
        parse(path)
    except InputError as exc:
        text = str(exc)
        assert ERROR_LINE.match(text) and text.startswith(str(path)), text[:300]
    assert time.monotonic() - started < 1.0, f'{parse.__name__} took {time.monotonic() - started:.2f} s'


def _csv_with(path, header, template, column, value):
    """A one-row CSV from template with column replaced by value (quoted if it holds , or newline)."""
    row = list(template)
    row[column] = value if ',' not in value and '\n' not in value else json.dumps(value)
    path.write_text(header + '\n' + ','.join(row) + '\n')
    return path


def _fuzz_settings(examples=60):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@_fuzz_settings()
@given(column=st.integers(0, 4), value=FIELD_VALUE)
def test_orders_csv(tmp_path, column, value):
    path = _csv_with(tmp_path / 'orders.csv', 'participant,slot,side,energy_wh,limit_price', ORDER_ROW, column, value)
    _parse_quietly(lambda p: load_orders(p, CONFIG), path)


@_fuzz_settings()
@given(key=st.sampled_from(['participant', 'slot', 'side', 'energy_wh', 'limit_price']), value=FIELD_VALUE,
       raw=st.booleans())
def test_orders_json(tmp_path, key, value, raw):
    obj = {'participant': 'h001', 'slot': 0, 'side': 'buy', 'energy_wh': 100, 'limit_price': 0.1}
    text = json.dumps([obj])
    text = text.replace(f'"{key}": {json.dumps(obj[key])}', f'"{key}": {value if raw else json.dumps(value)}')
    path = tmp_path / 'orders.json'
    path.write_text(text)
    _parse_quietly(lambda p: load_orders(p, CONFIG), path)


@_fuzz_settings()
@given(column=st.integers(0, 2), value=FIELD_VALUE)
def test_readings_csv(tmp_path, column, value):
    path = _csv_with(tmp_path / 'readings.csv', 'participant,slot,net_wh', READING_ROW, column, value)
    _parse_quietly(lambda p: load_readings(p, CONFIG), path)


@_fuzz_settings()
@given(key=st.sampled_from(sorted(MARKET)), value=FIELD_VALUE)
def test_market_toml(tmp_path, key, value):
    table = dict(MARKET, **{key: value})
    path = tmp_path / 'market.toml'
    path.write_text('[market]\n' + ''.join(f'{k} = {v}\n' for k, v in table.items()))
    _parse_quietly(load_config, path)


@_fuzz_settings()
@given(key=st.sampled_from(sorted(NODE)), value=FIELD_VALUE, broker=st.booleans())
def test_deployment_toml(tmp_path, key, value, broker):
    table = dict(NODE, **{key: value})
    path = tmp_path / 'node.toml'
    path.write_text(('[broker]\n' if broker else '[node]\n') + ''.join(f'{k} = {v}\n' for k, v in table.items())
                    + '[deployment]\nnodes = ["a:1", "b:2", "c:3"]\nmpc = ["a:4", "b:5", "c:6"]\n')
    _parse_quietly(load_broker_config if broker else load_node_config, path)


@_fuzz_settings()
@given(key=st.sampled_from(sorted(BUNDLE)), value=FIELD_VALUE)
def test_stats_bundle(tmp_path, key, value):
    table = dict(BUNDLE, **{key: value})
    path = tmp_path / 'bundle.json'
    path.write_text('{' + ', '.join(f'"{k}": {v}' for k, v in table.items()) + '}')
    _parse_quietly(load_bundle, path)


@_fuzz_settings()
@given(st.one_of(FIELD_VALUE, st.text(max_size=200)))
def test_arbitrary_text_everywhere(tmp_path, text):
    for name, parse in (('o.csv', lambda p: load_orders(p, CONFIG)), ('o.json', lambda p: load_orders(p, CONFIG)),
                        ('r.csv', lambda p: load_readings(p, CONFIG)), ('m.toml', load_config),
                        ('n.toml', load_node_config), ('b.json', load_bundle), ('s.jsonl', read_submissions)):
        path = tmp_path / name
        path.write_text(text)
        _parse_quietly(parse, path)


REVIEW_CASES = {  # file name -> (content, which argument it is)
    'huge-field.csv': ('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,' + '1' * 140000 + '\n', 'orders'),
    'long-int.csv': ('participant,slot,side,energy_wh,limit_price\nh1,' + '9' * 5000 + ',buy,5,0.1\n', 'orders'),
    'price-huge.csv': ('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,1e999999999\n', 'orders'),
    'price-tiny.csv': ('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,1e-999999999\n', 'orders'),
    'deep.json': ('[' * 100000 + ']' * 100000, 'orders'),
    'deep-field.json': ('[{"participant":"h1","slot":0,"side":"buy","energy_wh":5,"limit_price":'
                        + '[' * 100000 + ']' * 100000 + '}]', 'orders'),
    'long-int.json': ('[{"participant":"h1","slot":0,"side":"buy","energy_wh":' + '9' * 5000
                      + ',"limit_price":0.1}]', 'orders'),
    'tick-tiny.toml': ('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 1e-300\n', 'config'),
    'ceiling-huge.toml': ('[market]\nprice_floor = 0.047\nprice_ceiling = 1e99999999\ntick = 0.001\n', 'config'),
    'floor-tiny.toml': ('[market]\nprice_floor = 1e-999999999\nprice_ceiling = 0.139\ntick = 0.001\n', 'config'),
    'long-int.toml': ('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\nmax_order_wh = '
                      + '9' * 5000 + '\n', 'config'),
}


@pytest.mark.parametrize('name', sorted(REVIEW_CASES))
def test_review_cases_on_the_command_line(tmp_path, name):
    content, role = REVIEW_CASES[name]
    (tmp_path / name).write_text(content)
    (tmp_path / 'ok.csv').write_text('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,0.1\n')
    (tmp_path / 'ok.toml').write_text('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n')
    orders, config = (name, 'ok.toml') if role == 'orders' else ('ok.csv', name)
    started = time.monotonic()
    proc = cli('clear', '--engine', 'plain', '--orders', orders, '--config', config, '--out', 'out', cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-500:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {name}:') and ERROR_LINE.match(lines[0][7:]), lines
    assert not (tmp_path / 'out').exists()
    assert elapsed < 2.0, elapsed  # no quadratic parse, no huge allocation


def test_malformed_stats_bundles_are_one_line_errors(tmp_path):
    """stats decrypt used to crash with TypeError, AttributeError and KeyError on these."""
    from mpc_market.stats import paillier
    public, private = paillier.generate('dso', 'feeder', 2048, slots=4, max_reading_wh=100, max_meters=100)
    key_path = paillier.write_key_pair(str(tmp_path / 'op'), public, private)[1]
    good = {'format': 'mpc-market/aggregates/v1', 'key_id': public.key_id, 'level': 'feeder', 'day': '2026-11-20',
            'noise': None, 'groups': [], 'refused': []}
    cases = [[1, 2], dict(good, groups=[1]), dict(good, groups=[{'name': None}]), dict(good, groups='x'),
             dict(good, noise={'bias_wh': 'x'}), dict(good, day=5), dict(good, level=None),
             dict(good, groups=[{'name': 'F1', 'meters': 5, 'ciphertexts': ['!!']}]),
             dict(good, groups=[{'name': 'F1', 'meters': 5}]), dict(good, refused=[{'x': 1}])]
    for k, case in enumerate(cases):
        path = tmp_path / f'bundle{k}.json'
        path.write_text(json.dumps(case))
        proc = cli('stats', 'decrypt', '--key', key_path, '--aggregates', path, '--out', tmp_path / f'out{k}')
        lines = proc.stderr.splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f'error: {path}:'), (case, proc.stderr)
        assert not (tmp_path / f'out{k}').exists()
