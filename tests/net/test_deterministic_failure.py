"""A deterministic failure (a bug in a party, a job it refuses) is reported once with its reason and
not retried like a lost node (issue 22, problem 6); a crashed party still is."""

import time

import pytest

from mpc_market.net.client import BrokerClient
from mpc_market.net.config import load_broker_config
from mpc_market.rpc import market_pb2

from helpers import Market, node_fault_env, wait_for

pytestmark = [pytest.mark.deployment, pytest.mark.slow]
FAILED = market_pb2.RoundState.FAILED


def test_a_bug_fails_the_round_once_and_a_crash_is_retried(tmp_path):
    market = Market(tmp_path, participants=4, node_env={1: node_fault_env('bug', 1)})
    broker = BrokerClient(market.broker, market.keys, 'operator')
    try:
        market.open()
        market.submit_individually(market.participants)
        started = time.monotonic()
        closed = market.client('round', 'close', '--round', 'r1', '--wait', 120, check=False)
        assert time.monotonic() - started < 60, 'the wait ends when the failure is final, not at its timeout'
        assert closed.returncode != 0, closed.stdout + closed.stderr
        state = broker.status('r1')
        assert state.state == FAILED and state.final and 'KeyError' in state.reason, state
        time.sleep(10 * load_broker_config(market.deployment.broker_config).poll_s)  # 10 ticks: no second attempt
        again = broker.status('r1')
        assert again.attempts == 1 and again.state == FAILED, again
        log = (tmp_path / 'dep' / 'broker.log').read_text()
        assert log.count('deterministic: not retried') == 1, log
    finally:
        broker.close()
        market.stop()


def test_a_crashed_party_is_not_final(tmp_path):
    """A party that exits (a crash) fails its node's run as retriable: the broker reruns it once every
    node is back (test_deployment.py::test_node_killed_mid_clearing_fails_the_round_then_reruns_to_the_same_result
    and test_settlement_rounds.py: the reruns themselves)."""
    market = Market(tmp_path, participants=4, node_env={1: node_fault_env('fail', 1)})
    try:
        market.open()
        market.submit_individually(market.participants)
        market.client('round', 'close', '--round', 'r1', check=False)
        log = tmp_path / 'dep' / 'node1.log'
        wait_for(lambda: 'r1: clearing failed' in log.read_text(), 60, 'node 1 to fail its run')
        assert 'not retried' not in log.read_text(), log.read_text()
    finally:
        market.stop()
