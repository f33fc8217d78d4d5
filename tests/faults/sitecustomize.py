"""Test-only fault injection for node processes; never installed, never imported by mpc_market.

A test puts this directory first on PYTHONPATH and sets MPC_MARKET_TEST_FAULT for the processes
it starts (see tests/conftest.py ``node_fault_env``). Python then imports this module at start-up;
it wraps ``MarketNode.run`` as soon as mpc_market.mpc.clearing is imported:

- ``stall:I:SECONDS``: party I sleeps before clearing (a node busy or hung mid-round);
- ``fail:I``: party I exits as if it crashed.
"""

import importlib.machinery
import os
import sys

FAULT = os.environ.get('MPC_MARKET_TEST_FAULT', '')
TARGET = 'mpc_market.mpc.clearing'


def _inject(module):
    kind, index, *rest = FAULT.split(':')
    original = module.MarketNode.run

    async def run(self):
        import asyncio

        from mpyc.runtime import mpc
        if mpc.pid == int(index):
            if kind == 'stall':
                await asyncio.sleep(float(rest[0]))
            elif kind == 'fail':
                raise SystemExit('injected failure')
        return await original(self)
    module.MarketNode.run = run


class _WrapOnImport:
    """Meta path finder: load TARGET as usual, then inject the fault into it."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        exec_module = spec.loader.exec_module

        def exec_and_inject(module):
            exec_module(module)
            _inject(module)
        spec.loader.exec_module = exec_and_inject
        return spec


if FAULT:
    sys.meta_path.insert(0, _WrapOnImport)
