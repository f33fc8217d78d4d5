"""``GET /metrics`` over plain HTTP: the text of mpc_market.net.metrics, served by aiohttp on its
own event loop in a daemon thread, bound to the configured address only (never SO_REUSEPORT), GET
/metrics only, each connection closed CONNECTION_S after accept and at most MAX_CONNECTIONS open:
prometheus_client's own ``start_http_server`` runs a thread per request with no timeout, which a
slow client can hold open. Imported only by a process that serves metrics (run_server with a
metrics address): aiohttp's import costs a daemon about 0.1 s of CPU at start-up.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent import futures
from typing import cast

from aiohttp import web

from .httpserver import Gate, HTTPThread, split_address
from .metrics import metrics_text

__all__ = ['MetricsServer', 'start', 'CONNECTION_S', 'MAX_CONNECTIONS', 'COLLECT_S']

CONNECTION_S = 10.0   # a connection lives at most this long after accept (a scrape takes milliseconds)
MAX_CONNECTIONS = 16  # one or two Prometheus servers scrape an endpoint
COLLECT_S = 5.0       # a scrape whose collection (a store read) takes longer gets 503


class _Deadline(Gate):
    """aiohttp's protocol for one connection, aborted CONNECTION_S after accept; at most
    MAX_CONNECTIONS are admitted at once (more are aborted at accept)."""

    def __init__(self, open_: set[_Deadline], inner: asyncio.Protocol):
        super().__init__(inner)
        self.open = open_
        self.timer: asyncio.TimerHandle | None = None  # set once the connection is admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection with its deadline, or abort it when MAX_CONNECTIONS are open."""
        transport = cast(asyncio.Transport, transport)  # a server's stream connection
        self.transport = transport
        if len(self.open) >= MAX_CONNECTIONS:
            transport.abort()
            return
        self.open.add(self)
        self.admitted = True
        self.timer = asyncio.get_running_loop().call_later(CONNECTION_S, transport.abort)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Free the connection's place and tell aiohttp (nothing for one never admitted)."""
        if self in self.open:
            self.open.discard(self)
            self.admitted = False
            if self.timer is not None:  # always: it is set before the connection joins open
                self.timer.cancel()
            self.inner.connection_lost(exc)


class MetricsServer:
    """``GET /metrics`` over plain HTTP on one address, in a daemon thread with its own event loop."""

    def __init__(self, host: str, port: int):
        self._pool = futures.ThreadPoolExecutor(1, thread_name_prefix='metrics-collect')
        self._connections: set[_Deadline] = set()
        self._http = HTTPThread('metrics', host, port, self._handle, lambda inner: _Deadline(self._connections, inner),
                                backlog=32, keepalive_s=CONNECTION_S, on_stop=self._close_connections,
                                executors=[self._pool])
        self.server_address = self._http.server_address
        bound_host, bound_port = self.server_address
        self.url = f'http://{f"[{bound_host}]" if ":" in bound_host else bound_host}:{bound_port}/metrics'

    def _close_connections(self) -> None:
        for connection in list(self._connections):
            if connection.transport is not None:  # always: it joined connections in connection_made
                connection.transport.abort()

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        if request.method not in ('GET', 'HEAD'):
            return web.Response(status=405, text='read-only\n', headers={'Allow': 'GET, HEAD'})
        if request.raw_path != '/metrics':
            return web.Response(status=404, text='not found: GET /metrics\n')
        started = time.monotonic()
        try:
            async with asyncio.timeout(COLLECT_S):
                body, content_type = await asyncio.get_running_loop().run_in_executor(self._pool, metrics_text)
        except TimeoutError:
            return web.Response(status=503, text=f'busy: collection took over {time.monotonic() - started:.0f} s\n')
        return web.Response(body=body, headers={'Content-Type': content_type, 'Cache-Control': 'no-store'})

    def shutdown(self) -> None:
        """Stop serving and close every connection (waits at most a few seconds)."""
        self._http.shutdown()


def start(address: str) -> MetricsServer:
    """Serve /metrics on address ("host:port"; port 0 picks a free one) in a daemon thread.

    Returns:
        The MetricsServer: server_address is the bound (host, port); shutdown() stops it.

    Raises:
        OSError: the address cannot be bound (in use, or not an address of this host).
    """
    host, port = split_address(address)
    try:
        return MetricsServer(host, port)
    except OSError as exc:
        why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise OSError(f'metrics: cannot listen on {address}: {why}') from None
