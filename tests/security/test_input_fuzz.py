"""Hostile input files: every parser answers with one InputError line (FILE:LINE: field: ...) within
a second, or accepts the file; never a traceback, a hang or a half-written output.

Property-based over orders (CSV and JSON), meter readings, market TOML, deployment TOML and
statistics bundles and submissions: valid templates with one field replaced by hostile values,
and arbitrary text. The CLI cases of the adversarial review run as real commands."""

import contextlib
import datetime
import json
import os
import re
import resource
import time
import tracemalloc
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.common.errors import InputError
from mpc_market.market.config import MarketConfig, load_config
from mpc_market.market.importer import read_series
from mpc_market.market.orders import load_orders
from mpc_market.market.readings import load_readings
from mpc_market.net.config import load_broker_config, load_node_config
from mpc_market.stats.release import load_bundle
from mpc_market.stats.submission import read_submissions

from helpers import cli, run_examples

CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'))
TIMED = MarketConfig(Decimal('-0.05'), Decimal('0.139'), Decimal('0.001'), currency='CHF', timezone='Europe/Berlin',
                     start=datetime.datetime(2026, 3, 28, 23, tzinfo=datetime.UTC))  # slot_start and series inputs
ERROR_LINE = re.compile(r'^[^\n]+?(:\d+)?: [A-Za-z_]+: [^\n]+$')  # FILE[:LINE]: field: message

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
    return settings(max_examples=run_examples(examples), deadline=None,
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
    base = {k: v for k, v in NODE.items() if k in ('listen', 'data_dir', 'keys')} if broker else NODE
    table = dict(base, **{key: value})  # a broker file with a node's keys is refused for them (unknown keys)
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


def test_a_header_over_the_csv_field_limit_is_one_line_everywhere(tmp_path):
    """Every CSV reader that looks at the header first (to choose slot or slot_start, the series' quantity, the
    positions' kind) refuses a 140 kB header field in one line, as csv_records refuses one in a row."""
    from mpc_market.market.gridcheck import load_positions
    for name, parse in (('o.csv', lambda p: load_orders(p, TIMED)), ('r.csv', lambda p: load_readings(p, TIMED)),
                        ('s.csv', lambda p: read_series(p, TIMED)), ('p.csv', load_positions)):
        path = tmp_path / name
        path.write_text('participant,' + 'x' * 140000 + '\nh1,1\n')
        with pytest.raises(InputError, match=r':1: header: not CSV \(field larger than field limit'):
            parse(str(path))


@_fuzz_settings()
@given(when=FIELD_VALUE, value=FIELD_VALUE, who=FIELD_VALUE)
def test_series_fields(tmp_path, when, value, who):
    """import profiles' two formats with hostile times, values and names: a result or one line."""
    for name, text in (('g.csv', f'INTERVAL;POWER(W)\n{when};{value}\n00:15;100\n'),
                       ('l.csv', f'participant,datetime,power_w\n{who},{when},{value}\n'),
                       ('e.csv', f'participant,datetime,energy_wh\nh1,2026-03-29T00:00:00Z,{value}\n'
                                 f'h1,{when},5\n')):
        path = tmp_path / name
        path.write_text(text)
        _parse_quietly(lambda p: read_series(p, TIMED), path)


@_fuzz_settings()
@given(st.one_of(FIELD_VALUE, st.text(max_size=200)))
def test_arbitrary_text_everywhere(tmp_path, text):
    for name, parse in (('o.csv', lambda p: load_orders(p, CONFIG)), ('o.json', lambda p: load_orders(p, CONFIG)),
                        ('r.csv', lambda p: load_readings(p, CONFIG)), ('t.csv', lambda p: load_orders(p, TIMED)),
                        ('tr.csv', lambda p: load_readings(p, TIMED)), ('s.csv', lambda p: read_series(p, TIMED)),
                        ('m.toml', load_config),
                        ('n.toml', load_node_config), ('b.json', load_bundle), ('s.jsonl', read_submissions)):
        path = tmp_path / name
        path.write_text(text)
        _parse_quietly(parse, path)


REVIEW_CASES = {  # file name -> (content, which argument it is)
    'huge-field.csv': ('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,' + '1' * 140000 + '\n', 'orders'),
    'huge-header.csv': ('x' * 140000 + '\n', 'orders'),  # the slot-column check reads the header first
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


NOBODY = '127.0.0.1:1'  # no broker listens here: an argument error must come before any connection
ROUND_OPEN = ('round', 'open', '--broker', NOBODY, '--keys', 'no-keys', '--round', 'r1', '--market', 'no.toml')
COMMAND_LINE_CASES = {  # name -> (arguments, the option the one error line must name)
    'gate-closure-1e300': ((*ROUND_OPEN, '--slots', '0-3', '--gate-closure-in', '1e300'), '--gate-closure-in'),
    'gate-closure-nan': ((*ROUND_OPEN, '--slots', '0-3', '--gate-closure-in', 'nan'), '--gate-closure-in'),
    'gate-closure-inf': ((*ROUND_OPEN, '--slots', '0-3', '--gate-closure-in', 'inf'), '--gate-closure-in'),
    'gate-closure-negative': ((*ROUND_OPEN, '--slots', '0-3', '--gate-closure-in', '-5'), '--gate-closure-in'),
    'gate-closure-arabic': ((*ROUND_OPEN, '--slots', '0-3', '--gate-closure-in', '١٢٠'), '--gate-closure-in'),
    'deadline-nan': ((*ROUND_OPEN, '--slots', '0-3', '--readings-deadline-in', 'nan'), '--readings-deadline-in'),
    'readings-open-inf': ((*ROUND_OPEN, '--slots', '0-3', '--readings-open-in', 'inf'), '--readings-open-in'),
    'wait-1e300': (('round', 'close', '--broker', NOBODY, '--keys', 'no-keys', '--wait', '1e300'), '--wait'),
    'slot-above-int64': ((*ROUND_OPEN, '--slots', '9223372036854775808'), '--slots'),
    'slot-negative': ((*ROUND_OPEN, '--slots', '-1'), '--slots'),
    'slots-none': ((*ROUND_OPEN, '--slots', ''), '--slots'),
    'slots-backwards': ((*ROUND_OPEN, '--slots', '5-4'), '--slots'),
    'slots-twice': ((*ROUND_OPEN, '--slots', '0-3,2'), '--slots'),
    'slots-huge-range': ((*ROUND_OPEN, '--slots', '0-9223372036854775806'), '--slots'),
    'slots-10001': ((*ROUND_OPEN, '--slots', '0-10000'), '--slots'),
    'day-month-13': ((*ROUND_OPEN, '--slots', '0-3', '--day', '2026-13-45'), '--day'),
    'day-arabic-digits': ((*ROUND_OPEN, '--slots', '0-3', '--day', '٢٠٢٦-١٢-٠١'), '--day'),
    'day-basic-format': ((*ROUND_OPEN, '--slots', '0-3', '--day', '20261201'), '--day'),
    'bill-from-feb-30': (('results', '--broker', NOBODY, '--keys', 'no-keys', '--participant', 'h1', '--bill',
                          '--from', '2026-02-30'), '--from'),
    'meter-day-week-date': (('meter', 'submit', '--broker', NOBODY, '--keys', 'no-keys', '--readings', 'r.csv',
                             '--orders', 'o.csv', '--day', '2026-W01-1'), '--day'),
    'submit-batch-257': (('submit', '--broker', NOBODY, '--keys', 'no-keys', '--orders', 'o.csv', '--batch', '257'),
                         '--batch'),
    'submit-workers-0': (('submit', '--broker', NOBODY, '--keys', 'no-keys', '--orders', 'o.csv', '--workers', '0'),
                         '--workers'),
    'generate-slots-1e9': (('generate', '--participants', '10', '--slots', '1000000000', '--out', 'out'), '--slots'),
    'generate-participants-0': (('generate', '--participants', '0', '--out', 'out'), '--participants'),
    'generate-participants-1e6': (('generate', '--participants', '1000000', '--out', 'out'), '--participants'),
    'generate-participant-slots': (('generate', '--participants', '1001', '--slots', '1000', '--out', 'out'),
                                   'slots'),
    'generate-seed-negative': (('generate', '--participants', '10', '--seed', '-1', '--out', 'out'), '--seed'),
    'generate-zones-huge': (('generate', '--participants', '10', '--zones', '9' * 30, '--out', 'out'), '--zones'),
    'generate-fee-injection': (('generate', '--participants', '10', '--zones', '2', '--network-fee',
                                '0.01\nprice_floor = 5', '--out', 'out'), '--network-fee'),
    'generate-profile-day': (('generate', '--participants', '10', '--profiles', '2026-06-31', '--out', 'out'),
                             'profiles'),
    'demo-slots-1e9': (('demo', '--participants', '10', '--slots', '1000000000'), '--slots'),
    'clear-nodes-12': (('clear', '--orders', 'o.csv', '--config', 'm.toml', '--out', 'out', '--nodes', '12'),
                       '--nodes'),
    'clear-chunk-0': (('clear', '--orders', 'o.csv', '--config', 'm.toml', '--out', 'out', '--chunk', '0'),
                      '--chunk'),
    'up-base-port': (('up', '--dir', 'dep', '--base-port', '70000'), '--base-port'),
    'up-delay-inf': (('up', '--dir', 'dep', '--delay-ms', 'inf'), '--delay-ms'),
    'keys-nodes-99': (('keys', 'all', '--dir', 'keys', '--nodes', '99'), '--nodes'),
    'keys-index-negative': (('keys', 'node', '--dir', 'keys', '--index', '-1'), '--index'),
    'stats-bits-huge': (('stats', 'keygen', '--out', 'op', '--bits', '1' + '0' * 19), '--bits'),
    'stats-slots-0': (('stats', 'keygen', '--out', 'op', '--slots', '0'), '--slots'),
    'stats-batch-0': (('stats', 'submit', '--submissions', 's.jsonl', '--aggregator', NOBODY, '--keys', 'no-keys',
                       '--batch', '0'), '--batch'),
    'stats-day-month-13': (('stats', 'fetch', '--aggregator', NOBODY, '--keys', 'no-keys', '--pubkey', 'p.json',
                            '--day', '2026-13-45', '--out', 'out'), '--day'),
    'stats-min-cohort-1': (('stats', 'decrypt', '--key', 'k.json', '--aggregates', 'a.json', '--out', 'out',
                            '--min-cohort', '1'), '--min-cohort'),
}


@contextlib.contextmanager
def _address_space_capped(extra=1 << 30):
    """At most extra more bytes of address space meanwhile: a command that would allocate
    gigabytes (the old generate --slots 1000000000) fails with MemoryError instead of taking the machine."""
    with open('/proc/self/statm') as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (used + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run_measured(args, cwd):
    """(result, wall seconds, peak bytes traced) of one in-process run of mpc-market ARGS."""
    started = time.monotonic()
    tracemalloc.start()
    try:
        with _address_space_capped():
            proc = cli(*args, cwd=cwd)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return proc, time.monotonic() - started, peak


@pytest.mark.parametrize('name', sorted(COMMAND_LINE_CASES))
def test_every_number_and_day_on_the_command_line_is_bounded(tmp_path, name):
    """Each used to be a traceback, a wait without end, gigabytes, or a day no round could match."""
    args, option = COMMAND_LINE_CASES[name]
    runs = [_run_measured(args, tmp_path)]
    if runs[0][1] >= 0.5:  # run it again: a refusal that waits or computes is slow both times, one
        runs.append(_run_measured(args, tmp_path))  # descheduled on a busy machine (two workers) is not
    for proc, _, _ in runs:
        assert proc.returncode == 2, proc.stderr[-500:]
        assert 'Traceback' not in proc.stderr
        errors = [line for line in proc.stderr.splitlines() if 'error:' in line]
        usage = [line for line in proc.stderr.splitlines() if line not in errors]
        assert len(errors) == 1, proc.stderr
        assert f'argument {option}' in errors[0] or f'error: --{option.lstrip("-")}:' in errors[0], proc.stderr
        assert all(line.startswith(('usage: ', ' ')) for line in usage), usage  # argparse's usage, nothing else
        assert 'no-keys' not in errors[0] and NOBODY not in errors[0]  # about the argument, not keys or network
    assert os.listdir(tmp_path) == []  # nothing written
    elapsed, peak = min(run[1] for run in runs), max(run[2] for run in runs)
    assert elapsed < 0.5 and peak < 16 << 20, (elapsed, peak)  # refused before anything is allocated


BAD_DAYS = ['2026-13-45', '2026-02-30', '٢٠٢٦-١٢-٠١', '2026-12-٠١', '20261201', '2026-W01-1', '2026-1-01',
            ' 2026-12-01', '2026-12-01\n', '0000-01-01', '2026-12-01T00:00', '', None, 20261201]


@pytest.mark.parametrize('day', BAD_DAYS)
def test_days_are_parsed_strictly_everywhere(tmp_path, day):
    """The broker took 2026-13-45 and Arabic-Indic digits as a round's day (\\d matches them), and the
    statistics bundle reader did too; one parser now answers for the CLI, the broker and the statistics."""
    from mpc_market.common.days import parse_day
    from mpc_market.common.errors import BadParameter
    from mpc_market.market.profiles import parse_day as profile_day
    from mpc_market.net.broker import window_problem
    from mpc_market.rpc import market_pb2
    from mpc_market.stats.submission import parse_day as submission_day
    with pytest.raises(BadParameter):
        parse_day(day)
    if isinstance(day, str) and day:
        assert 'is not a calendar date' in window_problem(market_pb2.RoundSpec(round_id='r1', day=day))
        with pytest.raises(ValueError):
            submission_day(day)
        with pytest.raises(InputError):
            profile_day(day)
    path = tmp_path / 'bundle.json'
    path.write_text(json.dumps(dict(json.loads('{' + ', '.join(f'"{k}": {v}' for k, v in BUNDLE.items()) + '}'),
                                    day=day)))
    with pytest.raises(InputError, match=r':\d+: day: '):
        load_bundle(path)


def test_a_good_day_passes_everywhere(tmp_path):
    from mpc_market.common.days import parse_day
    from mpc_market.net.broker import window_problem
    from mpc_market.rpc import market_pb2
    assert parse_day('2026-12-01').isoformat() == '2026-12-01' and parse_day('2028-02-29').day == 29
    assert window_problem(market_pb2.RoundSpec(round_id='r1', day='2026-12-01')) == ''


@_fuzz_settings(200)
@given(st.text(alphabet='0123456789-٠١٢٣٤٥٦٧٨٩W T:', max_size=14))
def test_a_day_has_one_spelling(text):
    """Whatever parse_day accepts, it accepts in one spelling only: the date's own isoformat."""
    from mpc_market.common.days import is_day, parse_day
    if is_day(text):
        assert parse_day(text).isoformat() == text


@pytest.mark.parametrize('section, key, value', [
    ('node', 'connect_timeout_s', 'inf'), ('node', 'connect_timeout_s', 'nan'), ('node', 'clearing_timeout_s', '1e300'),
    ('node', 'rate_per_s', 'inf'), ('node', 'burst', '0'), ('node', 'burst', '9223372036854775807'),
    ('broker', 'poll_s', 'inf'), ('broker', 'poll_s', '1e-300'), ('broker', 'max_attempts', '9223372036854775807'),
])
def test_deployment_numbers_are_bounded(tmp_path, section, key, value):
    """poll_s = 1e-300 spun the broker, inf made a timer that never fires (inf > 0 passed)."""
    base = NODE if section == 'node' else {k: v for k, v in NODE.items() if k in ('listen', 'data_dir', 'keys')}
    table = dict(base, **{key: value})  # a broker file with a node's keys is refused for them (unknown keys)
    path = tmp_path / 'dep.toml'
    path.write_text(f'[{section}]\n' + ''.join(f'{k} = {v}\n' for k, v in table.items())
                    + '[deployment]\nnodes = ["a:1", "b:2", "c:3"]\nmpc = ["a:4", "b:5", "c:6"]\n')
    with pytest.raises(InputError, match=rf'dep.toml:{list(table).index(key) + 2}: {key}: expected'):
        (load_node_config if section == 'node' else load_broker_config)(path)
