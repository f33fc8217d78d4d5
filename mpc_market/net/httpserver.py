"""An aiohttp low-level ``web.Server`` on one address, in a daemon thread with its own event loop.

Shared by the metrics endpoint (mpc_market.net.metrics) and the broker's operator page
(mpc_market.net.webview): the thread and its loop, the bound socket (only the configured address,
never SO_REUSEPORT), the parser's bounds on request lines and headers, and an orderly stop. What
each server admits and how long a connection may live stays with it, in a ``Gate`` protocol that
wraps aiohttp's protocol for each connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent import futures
from typing import Any

from aiohttp import web

__all__ = ['Gate', 'HTTPThread', 'split_address']

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def split_address(address: str) -> tuple[str, int]:
    """A "host:port" address (an IPv6 host in brackets or not) as (host, port).

    Args:
        address: e.g. "127.0.0.1:9100" or "[::1]:0".

    Returns:
        (host without brackets, port).

    Raises:
        ValueError: there is no ":" or the port is not a number.
    """
    host, port = address.rsplit(':', 1)
    return host.strip('[]'), int(port)


class Gate(asyncio.Protocol):
    """aiohttp's protocol for one connection behind an admission check of its server: the events of
    a connection reach aiohttp only once connection_made has admitted it (a refused one is aborted
    before aiohttp sees it). Subclasses decide in connection_made and clean up in connection_lost."""

    def __init__(self, inner: asyncio.Protocol) -> None:
        self.inner = inner
        self.transport: asyncio.Transport | None = None  # set in connection_made
        self.admitted = False

    def data_received(self, data: bytes) -> None:
        """Pass the bytes to aiohttp (nothing for a refused connection)."""
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Pass the end of input to aiohttp (None, close: a refused connection)."""
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self) -> None:
        """Pass the transport's back pressure to aiohttp."""
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        """Pass the end of the transport's back pressure to aiohttp."""
        if self.admitted:
            self.inner.resume_writing()


class HTTPThread:
    """A ``web.Server`` serving handler on (host, port) in a daemon thread with its own event loop.

    The constructor returns once the socket is bound (server_address) or raises why it could not
    be. shutdown() stops accepting, calls on_stop in the loop (the server aborts every connection it
    admitted), gives aiohttp a second to finish, then shuts the executors down (their queued work
    is cancelled, none is waited for).
    """

    def __init__(self, name: str, host: str, port: int, handler: Handler, gate: Callable[[asyncio.Protocol], Gate],
                 *, backlog: int, keepalive_s: float, on_stop: Callable[[], None],
                 executors: Sequence[futures.Executor] = (), logger: logging.Logger | None = None,
                 handler_cancellation: bool = False) -> None:
        """Bind and serve.

        Args:
            name: the thread's name.
            host: the address to bind (only this one).
            port: its port (0 picks a free one).
            handler: aiohttp's low-level handler of one request.
            gate: wraps aiohttp's protocol for one connection in the server's admission check.
            backlog: the listen queue.
            keepalive_s: aiohttp's idle timer (the gate's deadlines decide first).
            on_stop: aborts every admitted connection (and stops the server's own tasks), called in
                the loop once the socket is closed.
            executors: shut down after the server (queued work cancelled).
            logger: where aiohttp logs malformed requests (None: aiohttp's own logger).
            handler_cancellation: cancel a handler whose client went away.

        Raises:
            OSError: the address cannot be bound (in use, or not an address of this host).
        """
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        self._handler, self._gate, self._backlog = handler, gate, backlog
        self._on_stop, self._executors = on_stop, tuple(executors)
        self._options: dict[str, Any] = {'handler_cancellation': handler_cancellation, 'access_log': None,
                                         'keepalive_timeout': keepalive_s, 'max_line_size': 2048,
                                         'max_field_size': 2048, 'max_headers': 32, 'lingering_time': 0}
        if logger is not None:
            self._options['logger'] = logger
        ready: futures.Future[tuple[str, int]] = futures.Future()
        self._thread = threading.Thread(target=self._run, args=(host, port, ready), name=name, daemon=True)
        self._thread.start()
        self.server_address = ready.result()

    def _run(self, host: str, port: int, ready: futures.Future[tuple[str, int]]) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(host, port, ready))
        finally:
            self._loop.close()

    async def _serve(self, host: str, port: int, ready: futures.Future[tuple[str, int]]) -> None:
        try:
            http = web.Server(self._handler, **self._options)  # in the loop: aiohttp binds it to the running one
            # reuse_port False: no other socket may share the port and take a share of the requests (half
            # the scrapes, some of the visitors); reuse_address True: a restarted daemon binds again despite
            # its closed connections' TIME_WAIT (on Linux it lets no second socket listen on the port)
            server = await self._loop.create_server(lambda: self._gate(http()), host, port, reuse_address=True,
                                                   reuse_port=False, backlog=self._backlog)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(server.sockets[0].getsockname()[:2])
        await self._stopped.wait()
        server.close()
        self._on_stop()
        await http.shutdown(1.0)
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Stop serving, close every connection and wait for the thread (at most a few seconds)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(5)
