"""The aggregator client checks that every meter-day of a batch got an answer."""

import pytest

from mpc_market.net.client import ClientError
from mpc_market.rpc import market_pb2
from mpc_market.stats.client import AggregatorClient


class Day:
    def to_proto(self):
        return market_pb2.EncryptedDay()


class ShortAnswers:
    """An aggregator that answers only the first meter-day of each batch."""

    def SubmitEncryptedDays(self, request, timeout):
        return market_pb2.EncryptedDayOutcomes(outcomes=[market_pb2.EncryptedDayOutcome(accepted=True)])


def test_a_reply_with_fewer_outcomes_than_meter_days_is_an_error_not_a_success():
    client = AggregatorClient.__new__(AggregatorClient)  # no channel: the stub is the fake aggregator
    client.address, client.stub = '127.0.0.1:1', ShortAnswers()
    with pytest.raises(ClientError, match='1 outcomes for 2 meter-days'):
        client.submit([Day(), Day()])
