"""Helpers shared by the test modules (fixtures live in conftest.py)."""

import os

TESTS = os.path.dirname(os.path.abspath(__file__))
FAULTS = os.path.join(TESTS, 'faults')


def node_fault_env(kind, index, seconds=None):
    """Environment for processes whose MPC party ``index`` should ``stall`` (for seconds) or ``fail``
    (see tests/faults/sitecustomize.py; production code has no fault hook)."""
    fault = f'{kind}:{index}' + (f':{seconds}' if seconds is not None else '')
    path = os.pathsep.join(p for p in (FAULTS, os.environ.get('PYTHONPATH', '')) if p)
    return {'PYTHONPATH': path, 'MPC_MARKET_TEST_FAULT': fault}
