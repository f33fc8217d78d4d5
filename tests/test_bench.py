"""The benchmark suites: `mpc-market bench SUITE --quick` writes every suite's files, every run equals
its plaintext reference, and a results directory alone regenerates its report and plots.

The runs are smoke runs (MPC_MARKET_BENCH_SMOKE=1: each preset's [smoke] overrides of [quick]): the
same code per suite on the smallest communities that still give every row type, plot and the
report; the figures of the [quick] presets are what `bench --quick` itself is for."""

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO, cli

SUITES = ('scaling', 'peers', 'mechanisms', 'baseline', 'latency', 'scenarios', 'mitigations',
          'clearing', 'settlement', 'rules', 'deployment', 'stats', 'round_params', 'flex')
EXTRA_SUITES = ('flood',)  # not in `all`; tests/security/test_flooding.py runs it


def test_the_command_knows_every_suite():
    sys.path.insert(0, REPO)  # benchmarks/ is a package of the checkout, not installed
    from benchmarks import suite
    from mpc_market.cli.bench import SUITES as COMMAND_SUITES
    assert suite.SUITES == SUITES and suite.EXTRA_SUITES == EXTRA_SUITES
    assert COMMAND_SUITES == (*SUITES, *EXTRA_SUITES, 'all')
    for name in SUITES + EXTRA_SUITES:  # each has its module and both presets
        module = suite.module(name)
        assert module.TITLE and module.COLUMNS and callable(module.run) and callable(module.figures), name
        assert suite.load_preset(name, True)[0] and suite.load_preset(name, False)[0], name
    for name in SUITES:  # the smoke runs below: [quick] with overrides of its own keys only
        quick, smoke = suite.load_preset(name, True)[0], suite.load_preset(name, True, smoke=True)[0]
        assert smoke != quick and set(smoke) == set(quick), name


@pytest.mark.slow
@pytest.mark.parametrize('suite', SUITES)  # one test per suite: xdist spreads them over the workers
def test_the_suite_runs_quick_and_its_results_regenerate_the_report(tmp_path, monkeypatch, suite):
    """On communities from the published profiles (--profiles): every run must still be exact."""
    monkeypatch.setenv('MPC_MARKET_BENCH_SMOKE', '1')  # inherited by `python -m benchmarks`
    assert cli('bench', suite, '--quick', '--profiles', '--out', tmp_path).returncode == 0
    directory = tmp_path / suite
    data = json.loads((directory / 'results.json').read_text())
    assert data['suite'] == suite and data['quick'] and data['smoke'] and data['machine']['cores'] \
        and data['versions']['mpyc']
    assert data['params']['profiles'] == '2026-06-17'
    assert data['rows'] and all(r['exact'] is True for r in data['rows']), suite
    assert all({'seconds', 'bytes_per_node', 'peak_rss_mb_per_node', 'seed'} <= set(r) for r in data['rows'])
    header = (directory / 'results.csv').read_text().splitlines()[0].split(',')
    assert {'seconds', 'exact', 'machine', 'version_mpyc'} <= set(header)
    plots = sorted(p.name for p in directory.glob('*.png'))
    report = (directory / 'report.md').read_text()
    assert plots and all(f']({p})' in report for p in plots) and report.count('Smoke run of') == 1, suite
    committed = os.path.join(REPO, 'benchmarks', 'results', 'suites', suite)  # the smoke run draws every figure
    assert plots == sorted(p for p in os.listdir(committed) if p.endswith('.png')), suite
    for name in plots + ['report.md']:
        os.remove(directory / name)
    subprocess.run([sys.executable, '-m', 'benchmarks', 'report', str(directory)], cwd=REPO, check=True)
    assert (directory / 'report.md').read_text() == report
    assert sorted(p.name for p in directory.glob('*.png')) == plots
    if suite == 'scaling':
        assert 'log-log slope' in report and '4.17 min' in report
