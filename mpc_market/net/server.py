"""The one gRPC server recipe of nodes, broker and aggregator, and the one map of errors to status codes.

- ``status_of`` is the only place a domain error (``mpc_market.common.errors``) becomes a gRPC
  status code; servicers call ``abort(context, exc, who)``.
- ``ClientNames`` is an interceptor that authorizes methods by the client certificate's name
  (e.g. round control at a node only from ``broker``) before the servicer runs.
- ``run_server`` starts a servicer behind mutual TLS with the standard health service, prints one
  line, and serves until SIGTERM or SIGINT (calling ``tick`` every ``tick_s`` meanwhile); with a
  metrics address it also serves ``/metrics`` (mpc_market.net.metrics) and counts every request.
- ``check_free`` refuses an address another process listens on, before a daemon touches its state.
  Every gRPC server sets ``grpc.so_reuseport`` to 0: with gRPC's default SO_REUSEPORT a second
  broker could bind the port of a running one and take half its connections.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from typing import Any, NoReturn, Protocol, TypeVar, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ..common import errors
from . import metrics, tls

__all__ = ['STATUS_OF', 'status_of', 'abort', 'domain_errors', 'ClientNames', 'run_server', 'server_options',
           'check_free']

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
    errors.Conflict: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unreachable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of a domain error: its most specific class in STATUS_OF (INVALID_ARGUMENT
    for any other refusal, INTERNAL for anything else)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INVALID_ARGUMENT if isinstance(exc, errors.Refused) else grpc.StatusCode.INTERNAL


class _Aborting(Protocol):
    """What abort uses of grpc.ServicerContext, typed as grpc documents it: abort raises.
    (grpc ships no type information, so mypy would take the call to return.)"""

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn: ...


def abort(context: grpc.ServicerContext, exc: BaseException, who: str) -> NoReturn:
    """End the RPC with exc's status code and ``who: message``.

    Args:
        context: the RPC's servicer context.
        exc: the domain error (status_of gives its code).
        who: the message's prefix ('broker', 'node 1', 'aggregator').

    Raises:
        Exception: grpc's own, which ends the RPC (context.abort always raises).
    """
    cast(_Aborting, context).abort(status_of(exc), f'{who}: {exc}')


C = TypeVar('C', bound=type)
RpcMethod = Callable[[Any, Any, grpc.ServicerContext], Any]  # a servicer's (self, request, context) -> reply


def domain_errors(who: str | Callable[[Any], str]) -> Callable[[C], C]:
    """A servicer class decorator: a MarketError raised by any RPC method (CamelCase) ends the RPC
    through abort, so servicers raise typed errors and only STATUS_OF maps them.

    Args:
        who: the prefix of every message ('broker'), or a function of the servicer giving it.

    Returns:
        The decorator.
    """
    def wrap(method: RpcMethod) -> RpcMethod:
        @functools.wraps(method)
        def rpc(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(self, request, context)
            except errors.MarketError as exc:
                abort(context, exc, who(self) if callable(who) else who)
        return rpc

    def decorate(cls: C) -> C:
        for name, member in list(vars(cls).items()):
            if callable(member) and name[:1].isupper():
                setattr(cls, name, wrap(member))
        return cls
    return decorate


class ClientNames(grpc.ServerInterceptor):
    """Authorize methods by client certificate name before the servicer sees the request.

    rules: full method name (``/mpc_market.rpc.Node/OpenRound``) -> a predicate on the client's
    certificate name (None when the client presented none); methods without a rule pass through.
    """

    def __init__(self, rules: Mapping[str, Callable[[str | None], bool]], who: str,
                 refusal: Callable[[str, str | None], str]):
        self.rules, self.who, self.refusal = dict(rules), who, refusal

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The method's handler, guarded by its rule (as is without one)."""
        handler = continuation(handler_call_details)
        rule = self.rules.get(handler_call_details.method)
        if handler is None or rule is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit('/', 1)[-1]
        inner = handler.unary_unary

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            name = tls.client_name(context)
            if not rule(name):
                abort(context, errors.NotPermitted(self.refusal(method, name)), self.who)
            return inner(request, context)
        return grpc.unary_unary_rpc_method_handler(guarded, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def server_options() -> list[tuple[str, int]]:
    """The options of every gRPC server: message limits, and no SO_REUSEPORT (a taken port is an
    error, not a port shared with whoever else binds it)."""
    return [*tls.server_options(), ('grpc.so_reuseport', 0)]


def check_free(who: str, listen: str) -> None:
    """Refuse a ``host:port`` that another socket listens on (a port of 0 is always free).

    Binds and closes a socket with SO_REUSEADDR, as gRPC binds (so a port in TIME_WAIT is free)
    and without SO_REUSEPORT.

    Raises:
        OSError: ``WHO: cannot listen on HOST:PORT: address already in use`` (or the bind's reason).
    """
    host, port = listen.rsplit(':', 1)
    if int(port) == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip('[]'), int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f'{who}: cannot listen on {listen}: {exc.strerror}') from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6:
                    continue  # a host without IPv6 on this name: gRPC binds the other addresses
                raise OSError(f'{who}: cannot listen on {listen}: {os_reason(exc)}') from None


def os_reason(exc: OSError) -> str:
    """'address already in use' and the like: the errno's text, lower case."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)


def run_server(who: str, listen: str, credentials: grpc.ServerCredentials,
               add_servicers: Callable[[grpc.Server], Iterable[str]], workers: int, banner: str,
               interceptors: Iterable[grpc.ServerInterceptor] = (), tick: Callable[[], None] | None = None,
               tick_s: float = 1.0, metrics_address: str = '') -> None:
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
        metrics_address: ``host:port`` for ``GET /metrics`` ('' = none).

    Raises:
        OSError: an address cannot be bound (``... address already in use``); nothing is served then.
    """
    check_free(who, listen)
    # RequestCounter outermost: it sees the refusals of the other interceptors too
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=server_options(),
                         interceptors=[metrics.RequestCounter(), *interceptors])
    services = list(add_servicers(server))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        bound = server.add_secure_port(listen, credentials)
    except RuntimeError:  # grpc >= 1.5x raises instead of returning 0; check_free lost a race
        bound = 0
    if not bound:
        raise OSError(f'{who}: cannot listen on {listen}: address already in use or not an address of this host')
    endpoint = None
    if metrics_address:
        try:
            from . import metrics_endpoint  # aiohttp: only where metrics are served
            endpoint = metrics_endpoint.start(metrics_address)
        except OSError:
            server.stop(None)
            raise
    server.start()
    for service in ['', *services]:
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    print(banner + (f'; metrics on {endpoint.url}' if endpoint else ''), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(tick_s if tick else None):
        if tick is not None:  # without a tick the wait ends only when stopped
            tick()
    health_servicer.enter_graceful_shutdown()
    server.stop(2).wait()
    if endpoint is not None:
        endpoint.shutdown()
