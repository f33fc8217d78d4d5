"""gRPC clients of the statistics aggregator: meters submit, operators fetch (mutual TLS)."""

import functools

import grpc

from ..net import tls
from ..net.admission import retry_when_busy
from ..net.client import ClientError
from ..rpc import market_pb2, market_pb2_grpc


class AggregatorClient:
    """A channel to the aggregator that accepts only its certificate name ('aggregator')."""

    def __init__(self, address, keys_dir, client):
        self.address = address
        self.channel = tls.secure_channel(address, tls.client_credentials(keys_dir, 'clients', client),
                                                 'aggregator')
        self.stub = market_pb2_grpc.StatsAggregatorStub(self.channel)

    def close(self):
        self.channel.close()

    def _call(self, what, method, request, timeout):
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise ClientError(f'aggregator {self.address}: {what}: {exc.code().name}: {exc.details()}') from None

    def submit(self, submissions, batch=256, timeout=60):
        """[(submission, None or 'CODE: reason')] for EncryptedDays, sent batch at a time."""
        out = []
        for start in range(0, len(submissions), batch):
            chunk = submissions[start:start + batch]
            reply = self._call('submit', functools.partial(retry_when_busy, self.stub.SubmitEncryptedDays),
                               market_pb2.EncryptedDayBatch(days=[s.to_proto() for s in chunk]), timeout)
            if len(reply.outcomes) != len(chunk):  # a meter-day without an answer must not count as accepted
                raise ClientError(f'aggregator {self.address}: submit: {len(reply.outcomes)} outcomes for '
                                  f'{len(chunk)} meter-days')
            out += [(s, None if o.accepted else f'{o.code}: {o.error}')
                    for s, o in zip(chunk, reply.outcomes, strict=True)]
        return out

    def fetch(self, day, key_id, timeout=120):
        """The aggregates bundle (JSON text) of day under key_id."""
        reply = self._call('fetch aggregates', self.stub.FetchAggregates,
                           market_pb2.AggregatesRequest(day=day, key_id=key_id), timeout)
        return reply.bundle.decode()
