"""Test-only fault injection for node processes; never installed, never imported by mpc_market.

A test puts this directory first on PYTHONPATH and sets MPC_MARKET_TEST_FAULT for the processes
it starts (see tests/conftest.py ``node_fault_env``). Python then imports this module at start-up;
it wraps ``MarketNode.run`` as soon as mpc_market.mpc.clearing is imported:

- ``stall:I:SECONDS``: party I sleeps before clearing (a node busy or hung mid-round);
- ``fail:I``: party I exits as if it crashed;
- ``bug:I``: party I raises a KeyError (a bug: the same inputs fail the same way on every rerun);
- ``stall-settle:I:SECONDS``: party I sleeps before settling (wraps ``SettlementNode.run`` of
  mpc_market.mpc.settlement: a node hung in a settlement session);
- ``clock-days:0:DAYS``: the statistics aggregator's clock runs DAYS days ahead (wraps the
  ``datetime`` of mpc_market.stats.service), so a test can fetch today's aggregates, which the
  real clock releases only after the day;
- ``check-floors:0``: every party opens (test only!) each input of the per-order floor and exits
  if one is not below 2**y_bits: the bound every masked opening relies on, so a malicious client's
  values must be zeroed before they reach a floor (else a colluding node could read the ratio).
"""

import importlib.machinery
import os
import sys

FAULT = os.environ.get('MPC_MARKET_TEST_FAULT', '')
TARGET = {'stall-settle': 'mpc_market.mpc.settlement', 'clock-days': 'mpc_market.stats.service'}.get(
    FAULT.split(':')[0], 'mpc_market.mpc.clearing')


def _check_floors(module):
    from mpc_market.mpc import primitives
    original = primitives.floor_of_ratio_product

    async def checked(y, f, y_bits, bound):
        opened = await primitives.open_values(y)
        if any(int(v) >= 1 << y_bits for v in opened.reshape(-1)):
            raise SystemExit(f'error: a floor input is not below 2**{y_bits}')
        return await original(y, f, y_bits, bound)
    primitives.floor_of_ratio_product = checked  # every mechanism calls it through the module


def _shift_clock(module, days):
    import datetime
    import types

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime.now(tz) + datetime.timedelta(days=days)
    # the datetime module as the aggregator sees it, only with a later clock: every other name as is
    names = {name: getattr(datetime, name) for name in dir(datetime) if not name.startswith('__')}
    module.datetime = types.SimpleNamespace(**dict(names, datetime=Later))


def _inject(module):
    kind, index, *rest = FAULT.split(':')
    if kind == 'check-floors':
        return _check_floors(module)
    if kind == 'clock-days':
        return _shift_clock(module, float(rest[0]))
    cls = module.SettlementNode if kind == 'stall-settle' else module.MarketNode
    original = cls.run

    async def run(self, *args):
        import asyncio

        from mpyc.runtime import mpc
        if mpc.pid == int(index):
            if kind in ('stall', 'stall-settle'):
                await asyncio.sleep(float(rest[0]))
            elif kind == 'fail':
                raise SystemExit('injected failure')
            elif kind == 'bug':
                raise KeyError('zones')
        return await original(self, *args)
    cls.run = run


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
