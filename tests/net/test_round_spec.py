"""A node refuses a round specification it could not sign into parameters every client parses:
the broker is not trusted with the slot count, the day or the times (issue 21)."""

import types

import grpc
import pytest

from mpc_market.common.errors import Refused
from mpc_market.net.messages import MAX_ROUND_SLOTS, spec_problem
from mpc_market.net.node import MarketNodeServer
from mpc_market.net.store import Store, now_ms
from mpc_market.rpc import market_pb2

TOML = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'


def spec(**changes):
    fields = dict(round_id='r1', slots=[0, 1], gate_closure_unix_ms=now_ms() + 60_000, market_toml=TOML)
    fields.update(changes)
    return market_pb2.RoundSpec(**fields)


HOSTILE = {
    'too many slots': dict(slots=list(range(MAX_ROUND_SLOTS + 1))),
    'not a day': dict(day='2026-02-30'),
    'non-ASCII day': dict(day='２０２６-12-01'),
    'a time no client represents': dict(gate_closure_unix_ms=(1 << 53) + 1),
    'a market that does not parse': dict(market_toml='[market]\nprice_floor = "x"\n'),
    'zones without a [zones] table': dict(market_toml=TOML + 'zones = true\nnetwork_fee = 0.01\n'),
}


class Aborted(Exception):
    pass


class Context:
    def abort(self, code, details):
        raise Aborted(code, details)


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_spec_problem_names_each_hostile_specification(case):
    assert spec_problem(spec(**HOSTILE[case]), 3)


def test_spec_problem_accepts_a_real_specification():
    assert spec_problem(spec(day='2026-12-01', slots=list(range(MAX_ROUND_SLOTS))), 3) == ''


@pytest.mark.parametrize('case', sorted(HOSTILE))
def test_the_node_refuses_and_stores_nothing(tmp_path, case):
    config = types.SimpleNamespace(index=0, rate_per_s=1, burst=8, mpc=['a', 'b', 'c'])
    store = Store(str(tmp_path / 'node.db'))
    node = MarketNodeServer(config, store, {}, None, {})
    with pytest.raises(Aborted) as info:
        node.OpenRound(spec(**HOSTILE[case]), Context())
    assert info.value.args[0] == grpc.StatusCode.INVALID_ARGUMENT and '\n' not in info.value.args[1]
    with pytest.raises(Refused):
        store.round('r1')
