"""The command line as a user meets it: --version, help without empty defaults, `round` as real
subcommands with only their own options, plain error lines with hints (a separator, a misspelt
key), and a closed pipe ending quietly (issue 22, problems 8 and 10)."""

import argparse
import json
import os
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from mpc_market.cli.main import build_parser
from mpc_market.common.errors import COMMAND_LINE, InputError
from mpc_market.net.config import load_node_config

from helpers import REPO, cli

TOML = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
ORDERS = 'participant,slot,side,energy_wh,limit_price\nh00,0,buy,100,0.12\nh01,0,sell,100,0.05\n'


def parsers(parser=None, path=('mpc-market',)):
    """(command path, parser, its help line) of every command and subcommand."""
    parser = parser or build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield path + (name,), sub, helps.get(name)
                yield from parsers(sub, path + (name,))


def test_version_is_the_installed_packages():
    result = cli('--version')
    assert result.returncode == 0 and result.stdout.strip() == f'mpc-market {metadata.version("mpc_market")}'


def test_every_command_is_described_and_no_help_shows_an_empty_default():
    seen = 0
    for path, parser, help_line in parsers():
        seen += 1
        assert help_line, f'{" ".join(path)} has no help line in its parent\'s list'
        text = parser.format_help()
        assert '(default: )' not in text and '(default: None)' not in text, ' '.join(path)
    assert seen > 30  # every command and subcommand was walked


def test_round_actions_take_only_their_own_options():
    base = ('--broker', '127.0.0.1:1', '--keys', 'k')
    wrong = cli('round', 'list', *base, '--slots', '99', '--mechanism', 'sdr')
    assert wrong.returncode == 2 and 'unrecognized arguments: --slots 99 --mechanism sdr' in wrong.stderr
    missing = cli('round', 'open', *base, '--slots', '0-3', '--market', 'm.toml')
    assert missing.returncode == 2 and 'the following arguments are required: --round' in missing.stderr
    for action in ('close', 'settled'):
        result = cli('round', action, *base)
        assert result.returncode == 2 and '--round' in result.stderr.splitlines()[-1], action
    no_wait = cli('round', 'settled', *base, '--round', 'r1')
    assert no_wait.returncode == 2 and 'required: --wait' in no_wait.stderr
    assert cli('round', 'status', *base, '--wait', '1', '--day', '2026-12-01').returncode == 2


def test_round_list_against_a_dead_broker_prints_its_error_and_no_table(tmp_path):
    cli('keys', 'all', '--dir', tmp_path / 'keys', '--participant', 'h00', check=True)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    result = cli('round', 'list', '--broker', f'127.0.0.1:{port}', '--keys', tmp_path / 'keys')
    assert result.returncode == 1 and result.stdout == '', result.stdout
    assert result.stderr.startswith(f'error: broker 127.0.0.1:{port}: UNAVAILABLE') and \
        len(result.stderr.splitlines()) == 1


def test_errors_name_a_file_or_an_option_without_placeholder_lines(tmp_path):
    (tmp_path / 'm.toml').write_text(TOML)
    missing = cli('clear', '--orders', tmp_path / 'nonexist.csv', '--config', tmp_path / 'm.toml',
                  '--out', tmp_path / 'out')
    assert missing.returncode == 2
    assert missing.stderr.strip() == f'error: {tmp_path / "nonexist.csv"}: No such file or directory'
    assert str(InputError(COMMAND_LINE, 0, 'http', 'expected "host:port"')) == '--http: expected "host:port"'
    assert str(InputError('deploy/keys', 0, 'manifest', 'missing')) == 'deploy/keys: manifest: missing'
    assert str(InputError('o.csv', 3, 'slot', 'bad')) == 'o.csv:3: slot: bad'
    for result in (missing, cli('generate', '--participants', 3, '--slots', 4, '--profiles', '2026-02-30',
                                '--out', tmp_path / 'g')):
        assert ':0:' not in result.stderr and '<command line>' not in result.stderr, result.stderr


def clear(tmp_path, orders, toml=TOML):
    (tmp_path / 'orders.csv').write_text(orders)
    (tmp_path / 'market.toml').write_text(toml)
    return cli('clear', '--orders', tmp_path / 'orders.csv', '--config', tmp_path / 'market.toml',
               '--out', tmp_path / 'out')


def test_a_semicolon_or_tab_separated_file_gets_a_separator_hint(tmp_path):
    for separator, name in ((';', 'semicolons'), ('\t', 'tabs')):
        result = clear(tmp_path, ORDERS.replace(',', separator))
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
        assert f'is separated by {name}: save the file as comma-separated CSV' in result.stderr, result.stderr
        assert not (tmp_path / 'out').exists()


def test_a_misspelt_column_or_key_suggests_the_closest_one(tmp_path):
    column = clear(tmp_path, ORDERS.replace('energy_wh', 'energy_kwh'))
    assert column.returncode == 2 and "the header has 'energy_kwh': a misspelling of energy_wh?" in column.stderr
    key = clear(tmp_path, ORDERS, TOML + 'max_order = 500\n')
    assert key.returncode == 2
    assert key.stderr.strip() == (f'error: {tmp_path / "market.toml"}:5: max_order: unknown key in [market]; '
                                  'did you mean max_order_wh?')
    far = clear(tmp_path, ORDERS, TOML + 'colour = 5\n')
    assert far.returncode == 2 and far.stderr.strip().endswith('colour: unknown key in [market]')


def test_node_and_broker_files_refuse_an_unknown_key_with_a_hint(tmp_path):
    path = tmp_path / 'node0.toml'
    path.write_text('[node]\nindex = 0\nlisten = "127.0.0.1:7301"\ndata_dir = "d"\nkeys = "k"\n'
                    'clearing_timout_s = 60\n[deployment]\nnodes = ["a:1", "b:2", "c:3"]\n'
                    'mpc = ["a:4", "b:5", "c:6"]\n')
    with pytest.raises(InputError) as error:
        load_node_config(str(path))
    assert str(error.value) == (f'{path}:6: clearing_timout_s: unknown key in [node]; '
                                'did you mean clearing_timeout_s?')
    broker = tmp_path / 'broker.toml'
    broker.write_text('[broker]\nlisten = "127.0.0.1:7300"\ndata_dir = "d"\nkeys = "k"\nmax_attempt = 3\n'
                      '[deployment]\nnodes = ["a:1", "b:2", "c:3"]\nmpc = ["a:4", "b:5", "c:6"]\n')
    result = cli('broker', '--config', broker)
    assert result.returncode == 2
    assert 'max_attempt: unknown key in [broker]; did you mean max_attempts?' in result.stderr


@pytest.mark.parametrize('args', [('--version',), ('--help',), ('generate', '--participants', '3', '--slots', '4')])
def test_a_closed_pipe_ends_quietly(tmp_path, args):
    # the reader closes its end before the command writes: every write is EPIPE (`mpc-market ... | head -0`)
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, '-m', 'mpc_market', *args, *(('--out', str(tmp_path / 'g'))
                            if args[0] == 'generate' else ())], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=env)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    # 141 (128 + SIGPIPE) as a shell reports `yes | head`; argparse's --help and --version swallow it (0)
    assert proc.wait(timeout=60) == (0 if args[0].startswith('--') else 141) and stderr == '', stderr


def test_a_hostile_participant_id_is_refused_before_any_path_is_built(tmp_path):
    for args in (('results', '--participant', '../../x', '--round', 'r1'),
                 ('meter', 'submit', '--readings', 'r.csv', '--orders', 'o.csv', '--day', '2026-12-01',
                  '--participant', 'a/b')):
        result = cli(*args, '--broker', '127.0.0.1:1', '--keys', tmp_path / 'keys')
        assert result.returncode == 2 and 'is not' in result.stderr.splitlines()[-1], result.stderr
    assert not (tmp_path / 'keys').exists()


def test_a_brokers_reason_cannot_drive_the_terminal():
    from mpc_market.cli.rounds import list_line, state_line
    from mpc_market.rpc import market_pb2
    state = market_pb2.RoundState(round_id='r1', state=market_pb2.RoundState.FAILED, slots=[0],
                                  market_toml=TOML, reason='lost\x1b[2J\x1b]0;owned\x07\nnode 2')
    for line in (state_line(state), list_line(state)):
        assert '\x1b' not in line and '\x07' not in line and '\n' not in line and 'lost?[2J' in line


def test_clear_reads_its_orders_from_a_pipe(tmp_path):
    (tmp_path / 'market.toml').write_text(TOML)
    (tmp_path / 'orders.csv').write_text(ORDERS)
    env = dict(os.environ, PYTHONPATH=REPO)
    for name, piped in (('file', None), ('pipe', ORDERS)):  # `--orders /dev/stdin` fed by a real pipe
        orders = str(tmp_path / 'orders.csv') if piped is None else '/dev/stdin'
        proc = subprocess.run([sys.executable, '-m', 'mpc_market', 'clear', '--engine', 'plain', '--orders', orders,
                               '--config', str(tmp_path / 'market.toml'), '--out', str(tmp_path / name)],
                              input=piped, capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
    for csv_name in ('public.csv', 'participants.csv'):
        assert (tmp_path / 'file' / csv_name).read_text() == (tmp_path / 'pipe' / csv_name).read_text()
    summary = json.loads((tmp_path / 'pipe' / 'summary.json').read_text())
    assert [f['sha256'] for f in summary['provenance']['inputs'] if f['role'] == 'orders'] == ['']
    assert oct((tmp_path / 'pipe' / 'participants.csv').stat().st_mode & 0o777) == '0o600'


def test_the_parser_built_once_keeps_no_state_between_commands():
    # main() reuses one parser per process: a repeated option of one command must not reach the next
    from mpc_market.cli.main import _parser
    common = ['stats', 'encrypt', '--readings', 'r.csv', '--day', '2026-06-01', '--feeders', 'f.csv', '--keys', 'k',
              '--out', 'o']
    first = _parser().parse_args(common + ['--pubkey', 'a.pub', '--pubkey', 'b.pub', '--meter', 'm1'])
    second = _parser().parse_args(common + ['--pubkey', 'c.pub'])
    assert (first.pubkey, first.meter) == (['a.pub', 'b.pub'], ['m1'])
    assert (second.pubkey, second.meter) == (['c.pub'], None)
    assert _parser() is _parser()
