"""Admission control for the gRPC services, applied before any expensive work.

Every submission RPC (a node's SubmitOrder / SubmitReadings / SubmitBatch / FetchResults, the
aggregator's SubmitEncryptedDays) first passes ``Admission.admit`` with the number of items it
carries. Checked in order, all O(1) under one lock, nothing parsed yet:

- items per request <= max_items (a batch cannot make one request arbitrarily expensive);
- submission work in flight < workers - reserved, so ``reserved`` worker threads always remain
  for the broker's round control, status and health checks;
- in flight per client certificate < per_client, so one flooding certificate cannot take every
  submission slot from the others;
- a token bucket of items per client certificate (rate, burst): a certificate's sustained cost is
  bounded, whatever its items turn out to be.

A refused request gets RESOURCE_EXHAUSTED at once (clients back off and retry). The per-
participant limit after the signature check (service.RateLimiter) stays as it was.
"""

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from ..common.errors import BadParameter, Overloaded, TooLarge
from . import metrics
from .server import abort
from .tls import client_name

__all__ = ['Admission', 'is_busy', 'retry_when_busy']

RETRY_KEY = 'mpc-market-retry'  # trailing metadata of a request turned away by admission control

T = TypeVar('T')


class Admission:
    def __init__(self, workers: int, reserved: int = 2, per_client: int = 6, items_per_s: float = 4000.0,
                 burst: int = 8000, max_items: int = 256):
        if workers <= reserved:
            raise BadParameter('workers', 'need more workers than reserved ones')
        self.slots = workers - reserved
        self.per_client, self.rate, self.burst, self.max_items = per_client, items_per_s, burst, max_items
        self._lock = threading.Lock()
        self._busy = 0
        self._busy_by: dict[str, int] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at monotonic time)

    @contextlib.contextmanager
    def admit(self, context: grpc.ServicerContext, items: int = 1, what: str = 'server') -> Iterator[None]:
        """Run the body as admitted work, or abort the RPC with RESOURCE_EXHAUSTED."""
        if items > self.max_items:
            metrics.count_admission_refusal('too_many_items')
            abort(context, TooLarge(f'{items} items in one request, at most {self.max_items}'), what)
        client = client_name(context)
        refusal = self._enter(client, max(1, items))
        if refusal:
            reason, message = refusal
            metrics.count_admission_refusal(reason)
            context.set_trailing_metadata(((RETRY_KEY, 'busy'),))  # "not now", as opposed to "never"
            abort(context, Overloaded(f'{message}; retry later'), what)
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._busy_by[client] -= 1

    def _enter(self, client: str, items: int) -> tuple[str, str] | None:
        """None when admitted, else (metrics reason, message)."""
        now = time.monotonic()
        with self._lock:
            if self._busy >= self.slots:
                return 'busy', 'busy'
            if self._busy_by.get(client, 0) >= self.per_client:
                return 'client_in_flight', f'too many requests in flight from {client!r}'
            tokens, last = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens < items:
                self._buckets[client] = (tokens, now)
                return 'client_rate', f'rate limit of client certificate {client!r}'
            self._buckets[client] = (tokens - items, now)
            self._busy += 1
            self._busy_by[client] = self._busy_by.get(client, 0) + 1
        return None


def is_busy(exc: grpc.RpcError) -> bool:
    """Whether a server's admission control turned the request away for now (not a verdict on it).

    Told by the trailing metadata the server sets, never by the message.

    Args:
        exc: the failed call's error (a grpc.Call as well).

    Returns:
        True for RESOURCE_EXHAUSTED carrying RETRY_KEY, else False.
    """
    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return False
    return any(key == RETRY_KEY for key, _ in (exc.trailing_metadata() or ()))


def retry_when_busy(call: Callable[..., T], request: object, timeout: float) -> T:
    """call(request, timeout=...), retried with jittered exponential backoff while the server is busy.

    Args:
        call: a stub's method.
        request: its request message.
        timeout: seconds for all attempts together.

    Returns:
        The call's reply.

    Raises:
        grpc.RpcError: any other error at once; the last busy refusal once timeout seconds have passed.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        try:
            return call(request, timeout=max(0.1, deadline - time.monotonic()))
        except grpc.RpcError as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(2 * delay, 1.0)
