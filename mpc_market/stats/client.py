"""gRPC clients of the statistics aggregator: meters submit, operators fetch (mutual TLS)."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from ..net import tls
from ..net.admission import retry_when_busy
from ..net.client import ClientError
from ..rpc import market_pb2, market_pb2_grpc
from .submission import EncryptedDay


class AggregatorClient:
    """A channel to the aggregator that accepts only its certificate name ('aggregator')."""

    def __init__(self, address: str, keys_dir: str, client: str) -> None:
        self.address = address
        self.channel = tls.secure_channel(address, tls.client_credentials(keys_dir, 'clients', client),
                                                 'aggregator')
        self.stub = market_pb2_grpc.StatsAggregatorStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    # request and reply are generated gRPC messages (their classes exist only at run time: Any)
    def _call(self, what: str, method: Callable[..., Any], request: Any, timeout: float) -> Any:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise ClientError(f'aggregator {self.address}: {what}: {exc.code().name}: {exc.details()}') from None

    def submit(self, submissions: Sequence[EncryptedDay], batch: int = 256,
               timeout: float = 60) -> list[tuple[EncryptedDay, str | None]]:
        """[(submission, None or 'CODE: reason')] for EncryptedDays, sent batch at a time."""
        out: list[tuple[EncryptedDay, str | None]] = []
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

    def fetch(self, day: str, key_id: str, timeout: float = 120) -> str:
        """The aggregates bundle (JSON text) of day under key_id."""
        reply = self._call('fetch aggregates', self.stub.FetchAggregates,
                           market_pb2.AggregatesRequest(day=day, key_id=key_id), timeout)
        return reply.bundle.decode()
