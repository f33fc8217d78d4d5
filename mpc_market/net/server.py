"""The one gRPC server recipe of nodes, broker and aggregator, and the one map of errors to status codes.

- ``status_of`` is the only place a domain error (``mpc_market.common.errors``) becomes a gRPC
  status code; servicers call ``abort(context, exc, who)``.
- ``ClientNames`` is an interceptor that authorizes methods by the client certificate's name
  (e.g. round control at a node only from ``broker``) before the servicer runs.
- ``run_server`` starts a servicer behind mutual TLS with the standard health service, prints one
  line, and serves until SIGTERM or SIGINT (calling ``tick`` every ``tick_s`` meanwhile).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..common import errors
from . import tls

__all__ = ['STATUS_OF', 'status_of', 'abort', 'ClientNames', 'run_server']

STATUS_OF = {
    errors.NotAuthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.NotPermitted: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.Replayed: grpc.StatusCode.ALREADY_EXISTS,
    errors.Tampered: grpc.StatusCode.DATA_LOSS,
    errors.WrongPhase: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Malformed: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InputError: grpc.StatusCode.INVALID_ARGUMENT,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of a domain error: its most specific class in STATUS_OF (INVALID_ARGUMENT
    for any other refusal, INTERNAL for anything else)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INVALID_ARGUMENT if isinstance(exc, errors.Refused) else grpc.StatusCode.INTERNAL


def abort(context: grpc.ServicerContext, exc: BaseException, who: str) -> None:
    """End the RPC with exc's status code and ``who: message`` (never returns)."""
    context.abort(status_of(exc), f'{who}: {exc}')


class ClientNames(grpc.ServerInterceptor):
    """Authorize methods by client certificate name before the servicer sees the request.

    rules: full method name (``/mpc_market.rpc.Node/OpenRound``) -> a predicate on the client's
    certificate name (None when the client presented none); methods without a rule pass through.
    """

    def __init__(self, rules: Mapping[str, Callable[[str | None], bool]], who: str,
                 refusal: Callable[[str, str | None], str]):
        self.rules, self.who, self.refusal = dict(rules), who, refusal

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        rule = self.rules.get(handler_call_details.method)
        if handler is None or rule is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit('/', 1)[-1]
        inner = handler.unary_unary

        def guarded(request, context):
            name = tls.client_name(context)
            if not rule(name):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f'{self.who}: {self.refusal(method, name)}')
            return inner(request, context)
        return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def run_server(who: str, listen: str, credentials: grpc.ServerCredentials,
               add_servicers: Callable[[grpc.Server], Iterable[str]], workers: int, banner: str,
               interceptors: Iterable[grpc.ServerInterceptor] = (), tick: Callable[[], None] | None = None,
               tick_s: float = 1.0) -> None:
    """Serve until SIGTERM or SIGINT.

    Args:
        who: the server's name in messages (``node 0``, ``broker``, ``aggregator``).
        listen: ``host:port``; the server binds this address only.
        credentials: mutual-TLS server credentials (see ``tls.server_credentials``).
        add_servicers: adds the servicers to the server; returns the service names to report as
            SERVING in the health service.
        workers: worker threads (admission control keeps some for control calls).
        banner: the line printed once the server listens.
        interceptors: e.g. ``ClientNames``.
        tick: called every tick_s seconds while serving (the broker's scheduler).

    Raises:
        OSError: the address cannot be bound.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=tls.server_options(),
                         interceptors=list(interceptors))
    services = list(add_servicers(server))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if not server.add_secure_port(listen, credentials):
        raise OSError(f'{who}: cannot listen on {listen}')
    server.start()
    for service in ['', *services]:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    print(banner, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(tick_s if tick else None):
        tick()
    health_servicer.enter_graceful_shutdown()
    server.stop(2).wait()
