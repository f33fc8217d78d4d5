"""The docs cannot drift: every documented command parses with the real parser, and the
walk-throughs run as written (in a temporary directory, with only the port made unique)."""

import contextlib
import glob
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest

from mpc_market.cli.main import build_parser

from helpers import REPO

DOCS = ['README.md', 'SECURITY.md', 'parties/README.md'] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'docs', '*.md')))
SEPARATORS = {';', '|', '&', '&&', '||', ')', '(', ';;'}


def shell_blocks(path, language='sh'):
    with open(os.path.join(REPO, path)) as f:
        text = f.read()
    return [body for lang, body in re.findall(r'```(\w*)\n(.*?)```', text, re.S) if lang == language]


def documented_commands(path):
    """(line, argv) of every ``mpc-market`` command in the file's sh blocks, with ``...`` meaning
    the previous command of the same kind, ``[optional]`` parts dropped and $VARS as 0."""
    commands, previous = [], {}
    for block in shell_blocks(path):
        for line in block.replace('\\\n', ' ').splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.commenters = '#'
            lexer.wordchars += ':$@,%+{}[]'
            tokens = list(lexer)
            while 'mpc-market' in tokens:
                tokens = tokens[tokens.index('mpc-market') + 1:]
                argv = []
                for token in tokens:
                    if token in SEPARATORS:
                        break
                    argv.append('0' if token.startswith('$') else token)
                tokens = tokens[len(argv):]
                argv = [a for a in argv if not (a.startswith('[') or a.endswith(']'))]
                kind = tuple(argv[:2] if len(argv) > 1 and not argv[1].startswith('-') and argv[1] != '...'
                             else argv[:1])
                if '...' in argv:
                    at = argv.index('...')
                    argv = argv[:at] + previous.get(kind, argv[:at])[at:] + argv[at + 1:]
                previous[kind] = argv
                commands.append((line.strip(), argv))
    return commands


def test_the_docs_document_commands():
    assert sum(len(documented_commands(path)) for path in DOCS) >= 30


@pytest.mark.parametrize('path', DOCS)
def test_every_documented_command_parses(path):
    parser = build_parser()
    for line, argv in documented_commands(path):
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f'{path}: `{line}` does not parse as {argv}')


def run_script(script, cwd, timeout=600):
    """The script's stdout; it fails the test when it exits non-zero or outlives timeout. It runs in its
    own session, so on a timeout its background jobs (an `mpc-market up` and its daemons) end too."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    proc = subprocess.Popen(['bash', '-euo', 'pipefail', '-c', script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f'timed out after {timeout} s: {stdout[-3000:]}{stderr[-3000:]}')
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing the script started outlives it
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


@pytest.mark.slow
def test_grid_statistics_walkthrough_runs(tmp_path):
    (block,) = shell_blocks('docs/grid-statistics.md')[:1]
    run_script(block, tmp_path)
    assert list((tmp_path / 'dso-report').glob('*.png')) and list((tmp_path / 'tso-report').glob('*.csv'))


@pytest.mark.slow
@pytest.mark.deployment
def test_deployment_quickstart_runs(tmp_path):
    """docs/deployment.md's quickstart on free ports; `sleep 5` becomes a
    wait for the broker (on a loaded machine five seconds may not be enough)."""
    block = next(b for b in shell_blocks('docs/deployment.md') if 'mpc-market up' in b)
    script = block.replace('127.0.0.1:7300', '"$BROKER"')
    script = script.replace('--config community/market.toml &',
                            '--config community/market.toml --base-port 0 > up.log 2>&1 &')
    # an `up` that exited (a taken port, a daemon that did not start) ends the wait with its log: the loop
    # used to spin until the test's timeout (300 s) with nothing to say why
    script = script.replace('sleep 5', 'until grep -q "^broker at" up.log 2>/dev/null; do\n'
                                       '  kill -0 $! 2>/dev/null || { cat up.log >&2; exit 1; }; sleep 0.1\ndone\n'
                                       'BROKER=$(sed -n "s/^broker at \\([^;]*\\);.*/\\1/p" up.log)')
    script = script.replace('kill %1', 'kill %1; wait')
    assert '--base-port 0' in script and 'BROKER=' in script and 'wait' in script
    out = run_script(script, tmp_path, timeout=300)
    assert 'h00,' in out and 'slot' in out and 'trade_amount' in out


@pytest.mark.slow
def test_readme_python_tour_runs(tmp_path):
    (code,) = shell_blocks('README.md', 'python')
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize('path', DOCS)
def test_relative_links_resolve(path):
    with open(os.path.join(REPO, path)) as f:
        links = re.findall(r'\]\(([^)#:]+)(?:#[^)]*)?\)', f.read())
    missing = [link for link in links if not os.path.exists(os.path.join(REPO, os.path.dirname(path), link))]
    assert not missing, missing
