"""The scripts in examples/ run as they are (small sizes here)."""

import os
import subprocess
import sys

import pytest

from helpers import REPO

EXAMPLES = os.path.join(REPO, 'examples')


def run(script, *args, cwd):
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_clear_community_under_mpc_equals_the_reference(tmp_path):
    out = run('clear_community.py', '--participants', '12', '--slots', '2', '--out', str(tmp_path / 'c'), cwd=tmp_path)
    assert 'MPC == reference' in out and (tmp_path / 'c' / 'orders.csv').exists()


def test_compare_mechanisms_prints_every_mechanism(tmp_path):
    out = run('compare_mechanisms.py', '--participants', '20', '--slots', '2', cwd=tmp_path)
    for mechanism in ('double-auction', 'sdr', 'mmr', 'bill-sharing'):
        assert mechanism in out


def test_plot_prices_writes_a_png(tmp_path):
    out = run('plot_prices.py', '--participants', '20', '--slots', '8', '--out', str(tmp_path / 'p.png'),
              '--market-out', str(tmp_path / 's.png'), cwd=tmp_path)
    assert 'wrote' in out
    for name in ('p.png', 's.png'):
        assert (tmp_path / name).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
