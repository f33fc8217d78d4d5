"""summary.json records the run's provenance (issue 22, problem 12): product version, command,
mechanism, the market's parsed parameters, every input file's SHA-256, engine, nodes, parties,
seeds and options; enough to rerun it and get the same files."""

import hashlib
import json

import pytest

from helpers import cli


@pytest.fixture(scope='module')
def community(tmp_path_factory):
    root = tmp_path_factory.mktemp('provenance')
    assert cli('generate', '--participants', '12', '--slots', '2', '--seed', '7', '--out', root / 'c').returncode == 0
    return root / 'c'


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def summary(out):
    return json.loads((out / 'summary.json').read_text())


@pytest.mark.slow  # --engine mpc: local MPyC node processes
def test_clear_records_the_inputs_and_the_market(community, tmp_path):
    result = cli('clear', '--orders', community / 'orders.csv', '--config', community / 'market.toml',
                 '--out', tmp_path / 'out', '--engine', 'mpc', '--nodes', '3', '--quiet')
    assert result.returncode == 0, result.stderr
    assert 'summary.json' in result.stdout.splitlines()[-1]
    document = summary(tmp_path / 'out')
    provenance = document['provenance']
    from importlib import metadata
    assert provenance['product'] == 'mpc-market' and provenance['version'] == metadata.version('mpc_market')
    assert provenance['command'] == 'clear' and provenance['mechanism'] == 'double-auction'
    assert provenance['created'].endswith('Z')
    assert [(f['role'], f['path'], f['sha256'], f['bytes']) for f in provenance['inputs']] == [
        ('market', str(community / 'market.toml'), sha256(community / 'market.toml'),
         (community / 'market.toml').stat().st_size),
        ('orders', str(community / 'orders.csv'), sha256(community / 'orders.csv'),
         (community / 'orders.csv').stat().st_size)]
    assert provenance['market'] == {'price_floor': '0.047', 'price_ceiling': '0.139', 'tick': '0.001',
                                    'max_order_wh': 65535, 'max_reading_wh': 65535, 'mechanism': 'double-auction',
                                    'zoned': False, 'network_fee': '0', 'zones': {}, 'currency': 'EUR', 'start': '',
                                    'slot_minutes': 15, 'timezone': 'UTC'}
    assert provenance['engine'] == 'mpc' and provenance['nodes'] == 3 and provenance['mode'] == 'local'
    orders = (community / 'orders.csv').read_text().splitlines()[1:]
    assert provenance['parties'] == {'participants': 12, 'orders': len(orders), 'slots': 2, 'zones': {}}
    assert provenance['options']['nodes'] == 3 and provenance['options']['engine'] == 'mpc'
    assert provenance['seeds'] == {} and provenance['libraries']['mpyc']
    public = (tmp_path / 'out/public.csv').read_text().splitlines()[1:]
    assert document['volumes']['local_wh'] == sum(int(line.split(',')[3]) for line in public)  # traded_wh
    assert document['stats']['engine'] == 'mpc'                # the engine's own figures, as before

    # the recorded options and inputs reproduce the run (the plaintext reference agrees exactly)
    options = provenance['options']
    again = cli('clear', '--orders', options['orders'], '--config', options['config'], '--out', tmp_path / 'again',
                '--engine', 'plain', '--quiet')
    assert again.returncode == 0
    for name in ('public.csv', 'participants.csv'):
        assert (tmp_path / 'again' / name).read_bytes() == (tmp_path / 'out' / name).read_bytes()


def test_settle_records_the_readings_and_the_mechanism_used(community, tmp_path):
    result = cli('settle', '--orders', community / 'orders.csv', '--readings', community / 'readings.csv',
                 '--config', community / 'market.toml', '--out', tmp_path / 'out', '--engine', 'plain',
                 '--mechanism', 'sdr', '--quiet')
    assert result.returncode == 0, result.stderr
    provenance = summary(tmp_path / 'out')['provenance']
    assert provenance['command'] == 'settle' and provenance['mechanism'] == 'sdr'
    assert provenance['market']['mechanism'] == 'sdr' and provenance['options']['mechanism'] == 'sdr'
    assert {f['role']: f['sha256'] for f in provenance['inputs']} == {
        'market': sha256(community / 'market.toml'), 'orders': sha256(community / 'orders.csv'),
        'readings': sha256(community / 'readings.csv')}
    assert provenance['engine'] == 'plain' and provenance['nodes'] == 0


def test_zoned_market_parameters_and_parties(tmp_path):
    assert cli('generate', '--participants', '40', '--slots', '2', '--zones', '2', '--out',
               tmp_path / 'z').returncode == 0
    result = cli('clear', '--orders', tmp_path / 'z/orders.csv', '--config', tmp_path / 'z/market.toml',
                 '--out', tmp_path / 'out', '--engine', 'plain', '--quiet')
    assert result.returncode == 0, result.stderr
    provenance = summary(tmp_path / 'out')['provenance']
    market = provenance['market']
    assert market['zoned'] is True and market['network_fee'] == '0.010' and sorted(market['zones']) == ['Z00', 'Z01']
    assert sum(len(members) for members in market['zones'].values()) == 40
    assert sum(provenance['parties']['zones'].values()) == provenance['parties']['participants'] == 40


@pytest.mark.slow  # peers mode: a committee of MPyC node processes
def test_peers_mode_records_the_committee_lottery_seed(community, tmp_path):
    result = cli('clear', '--orders', community / 'orders.csv', '--config', community / 'market.toml',
                 '--out', tmp_path / 'out', '--mode', 'peers', '--committee', '3', '--quiet')
    assert result.returncode == 0, result.stderr
    document = summary(tmp_path / 'out')
    provenance = document['provenance']
    assert provenance['mode'] == 'peers' and provenance['nodes'] == 3
    assert provenance['seeds'] == {'committee_lottery': document['stats']['committee']['seed']}
