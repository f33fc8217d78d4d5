"""The party supervisor's process environment."""

import sys

from mpc_market.mpc.supervisor import PartyProcess

SHOW = 'import os; print(os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get("MARK"))'


def test_a_party_runs_with_one_blas_thread_unless_its_environment_says_otherwise(tmp_path):
    default = PartyProcess([sys.executable, '-c', SHOW], str(tmp_path / 'a.log'), env={'MARK': 'x'})
    chosen = PartyProcess([sys.executable, '-c', SHOW], str(tmp_path / 'b.log'),
                          env={'MARK': 'y', 'OPENBLAS_NUM_THREADS': '4'})
    for party in (default, chosen):
        party.process.wait(30)
    assert default.lines() == ['1 x'] and chosen.lines() == ['4 y']
