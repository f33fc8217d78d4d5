"""The party supervisor's process environment."""

import sys

from mpc_market.mpc.supervisor import PartyProcess

SHOW = 'import os; print(os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get("MARK"))'


def test_a_party_runs_with_one_blas_thread_unless_its_environment_chooses(tmp_path):
    cases = {'1 a': {'MARK': 'a'}, '4 b': {'MARK': 'b', 'OPENBLAS_NUM_THREADS': '4'},
             'None c': {'MARK': 'c', 'OMP_NUM_THREADS': '2'}}   # OpenBLAS would read OMP's count
    parties = {want: PartyProcess([sys.executable, '-c', SHOW], str(tmp_path / f'{i}.log'), env=env)
               for i, (want, env) in enumerate(cases.items())}
    for want, party in parties.items():
        party.process.wait(30)
        assert party.lines() == [want]
