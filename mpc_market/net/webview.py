"""The broker's read-only operator page: ``mpc-market broker --http 127.0.0.1:PORT``.

Public information only: rounds with their phase and times, the node-signed public results of
cleared rounds (per-slot prices and volumes, drawn as inline SVG charts), the counts of cleared,
excluded and missing participants, and whether each node answers its health check. Never a
market file (a zone map names participants), never the live accepted counts (operators only, over
gRPC), never a share, order, reading or identity. GET of ``/`` (HTML) and ``/rounds.json`` only;
every value is escaped, the page runs no script (Content-Security-Policy forbids it), and the
server binds only the configured address. A failed round shows a generic reason; the broker's
own text (node addresses, exception messages) stays with operators (``round status`` over gRPC).

Served by aiohttp, whose parser bounds request lines and headers, behind an admission check of our
own (Guard): a connection is closed if its request head has not arrived head_s after accept, and
in any case request_s after accept; each client address holds at most per_address connections.
"""

import asyncio
import html
import json
import logging
import threading
import time
from collections import Counter
from concurrent import futures
from dataclasses import dataclass
from datetime import datetime, timezone

from aiohttp import web

from ..market.config import market_summary
from .messages import phase_name, settlement_enum

log = logging.getLogger('mpc_market.broker.page')
# aiohttp logs every malformed request with a traceback quoting it: a visitor could fill the
# broker's log, so its messages go to a logger that keeps only critical ones
PARSER_LOG = logging.getLogger('mpc_market.broker.page.http')
PARSER_LOG.setLevel(logging.CRITICAL)
HEALTH_CACHE_S = 5.0
HEADERS = {
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}


def utc(unix_ms):
    return datetime.fromtimestamp(unix_ms / 1000, timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')


def round_phase(round_):
    """A stored round's phase in one word (messages.phase_name)."""
    return phase_name(round_['state'], settlement_enum(round_['state'], round_['readings_deadline_ms'],
                                                       round_['settlement']))


# what a visitor learns of a failure: which phase, and whether a node could not be reached or
# the nodes' signed bodies differed; never the stored text (addresses, exception messages)
FAILURES = {'reason': ('clearing failed at a node', 'the nodes did not sign the same public results'),
            'settle_reason': ('settlement failed at a node', 'the nodes did not sign the same public settlement')}


def public_reason(round_: dict) -> str:
    """A generic note for a round's stored failure reason ('' if none).

    Args:
        round_: a stored round (its reason and settle_reason as the broker wrote them).

    Returns:
        One of a few fixed phrases, never the stored text itself.
    """
    for field, (failed, disagree) in FAILURES.items():
        text = round_[field]
        if text:
            if 'unreachable' in text:
                return 'a node was unreachable'
            return disagree if 'disagree' in text else failed
    return ''


def round_summary(round_, public, settlement=None):
    """The public view of one round (public: (body, signatures) once cleared, else None; settlement:
    the signed public settlement once settled)."""
    mechanism, zones = market_summary(round_['round_id'], round_['market_toml'])
    market = {'mechanism': mechanism, 'zones': zones}
    slots = round_['slots']
    summary = {'round_id': round_['round_id'], 'state': round_phase(round_), 'day': round_['day'],
               'reason': public_reason(round_),
               'gate_closure': utc(round_['gate_closure_ms']), 'attempts': round_['attempts'],
               'readings_deadline': utc(round_['readings_deadline_ms']) if round_['readings_deadline_ms'] else '',
               'slots': f'{slots[0]}-{slots[-1]} ({len(slots)})' if slots else '', **market}
    if public is not None:
        body = json.loads(public[0])
        summary['results'] = {'participants': body['participants'], 'excluded': body['excluded'],
                              'missing': body['missing'], 'signatures': len(public[1]), 'slots': body['slots']}
    if settlement is not None:
        body = json.loads(settlement[0])
        summary['settlement'] = {k: body[k] for k in ('settled', 'metered', 'missing_readings', 'invalid_readings')}
    return summary


class OperatorView:
    """Snapshots of the broker's public state for the page (node health cached a few seconds)."""

    def __init__(self, store, nodes):
        self.store, self.nodes = store, nodes
        self._health, self._health_at, self._lock = [], 0.0, threading.Lock()

    def health(self):
        with self._lock:
            if time.monotonic() - self._health_at > HEALTH_CACHE_S:
                self._health, self._health_at = self.nodes.serving(), time.monotonic()
            return list(self._health)

    def snapshot(self):
        rounds = [round_summary(r, self.store.public(r['round_id']), self.store.public(r['round_id'], 'settlement_public'))
                  for r in self.store.rounds()]
        return {'rounds': rounds, 'nodes': [{'node': i, 'serving': ok} for i, ok in enumerate(self.health())],
                'generated': utc(time.time() * 1000)}


def per_slot(public_slots):
    """[(slot, traded Wh over every market of the slot, price of its largest market or None)]: one
    market has one row per slot; a zoned one a row per zone, the cross auction and the fees."""
    slots = {}
    for row in public_slots:
        if row.get('market') != 'network-operator':
            slots.setdefault(int(row['slot']), []).append(row)
    out = []
    for slot, markets in sorted(slots.items()):
        traded = [m for m in markets if int(m.get('traded_wh') or 0) > 0 and m.get('price')]
        largest = min(traded, key=lambda m: (-int(m['traded_wh']), float(m['price'])), default=None)
        out.append((slot, sum(int(m.get('traded_wh') or 0) for m in markets),
                    float(largest['price']) if largest else None))
    return out


def chart(public_slots, width=640, height=180, margin=56):
    """Inline SVG: traded Wh per slot as bars (scale on the left), the (largest market's) clearing
    price as a line (scale on the right); the price scale spans the round's lowest to highest price."""
    rows = per_slot(public_slots)
    if not rows:
        return ''
    top_v = max([v for _, v, _ in rows] + [1])
    known = [p for _, _, p in rows if p is not None]
    low_p, high_p = (min(known), max(known)) if known else (0.0, 1.0)
    span_p = (high_p - low_p) or 1.0
    step = (width - 2 * margin) / len(rows)

    def price_y(p):
        return height - 10 - (p - low_p) / span_p * (height - 30)

    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" '
             f'role="img" aria-label="traded Wh and clearing price per slot" font-size="11">'
             f'<line x1="{margin}" y1="{height}" x2="{width - margin}" y2="{height}" stroke="#555"/>'
             f'<text x="{margin - 4}" y="14" text-anchor="end" fill="#3d6f99">{top_v} Wh</text>'
             f'<text x="{margin - 4}" y="{height}" text-anchor="end" fill="#3d6f99">0 Wh</text>']
    for i, (slot, volume, _) in enumerate(rows):
        h = volume / top_v * (height - 10)
        parts.append(f'<rect x="{margin + i * step + 1:.1f}" y="{height - h:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#9cc3e6"><title>slot {slot}: {volume} Wh</title></rect>')
        if i % -(-len(rows) // 12) == 0:  # at most 12 slot numbers under the bars
            parts.append(f'<text x="{margin + i * step + step / 2:.1f}" y="{height + 13}" text-anchor="middle">{slot}</text>')
    points = [(margin + i * step + step / 2, price_y(p)) for i, (_, _, p) in enumerate(rows) if p is not None]
    if points:
        parts.append('<polyline fill="none" stroke="#c0392b" stroke-width="2" points="'
                     + ' '.join(f'{x:.1f},{y:.1f}' for x, y in points) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#c0392b"/>' for x, y in points]
        parts += [f'<text x="{width - margin + 4}" y="{price_y(p) + 4:.1f}" fill="#c0392b">{p:g}</text>'
                  for p in dict.fromkeys((high_p, low_p))]
    parts.append(f'<text x="{margin}" y="{height + 32}" font-size="12">slots {rows[0][0]}-{rows[-1][0]}: bars traded '
                 f'Wh, red line clearing price per kWh ({low_p:g}-{high_p:g}; slots without trade have none)'
                 '</text></svg>')
    return ''.join(parts)


def slot_table(public_slots):
    rows = ''.join(f'<tr><td>{slot}</td><td>{"-" if price is None else f"{price:g}"}</td><td>{volume}</td></tr>'
                   for slot, volume, price in per_slot(public_slots))
    return f'<table class="slots"><tr><th>slot</th><th>price</th><th>traded Wh</th></tr>{rows}</table>'


def page(snapshot):
    e = html.escape
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mpc_market broker</title>',
           '<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}'
           'td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.ok{color:#1e7d32}.down{color:#b71c1c}'
           '.nodes span{margin-right:2em}'
           '</style></head><body><h1>mpc_market: rounds and public results</h1>',
           f'<p>Public information only, as of {e(snapshot["generated"])}.</p><h2>Nodes</h2><p class="nodes">']
    for n in snapshot['nodes']:
        cls, word = ('ok', 'serving') if n['serving'] else ('down', 'not serving')
        out.append(f'<span class="{cls}" id="node{n["node"]}">node {n["node"]}: {word}</span> ')
    out.append('</p><h2>Rounds</h2><table><tr><th>round</th><th>day</th><th>phase</th><th>slots</th><th>mechanism</th>'
               '<th>gate closure</th><th>readings until</th><th>attempts</th><th>cleared / excluded / missing</th>'
               '<th>metered / missing / invalid readings</th><th>note</th></tr>')
    for r in snapshot['rounds']:
        counts, settled = r.get('results'), r.get('settlement')
        count_text = f'{counts["participants"]} / {counts["excluded"]} / {counts["missing"]}' if counts else ''
        settled_text = (f'{settled["metered"]} / {settled["missing_readings"]} / {settled["invalid_readings"]}'
                        if settled else '')
        mechanism = r['mechanism'] + (f', {r["zones"]} zones' if r['zones'] else '')
        out.append(f'<tr class="round" data-round="{e(r["round_id"])}"><td>{e(r["round_id"])}</td>'
                   f'<td>{e(r["day"] or "-")}</td><td class="phase">{e(r["state"])}</td><td>{e(r["slots"])}</td>'
                   f'<td>{e(mechanism)}</td><td>{e(r["gate_closure"])}</td><td>{e(r["readings_deadline"] or "-")}</td>'
                   f'<td>{int(r["attempts"])}</td><td>{e(count_text or "-")}</td><td>{e(settled_text or "-")}</td>'
                   f'<td>{e(r["reason"])}</td></tr>')
    out.append('</table>')
    for r in snapshot['rounds']:
        if r.get('results'):
            out.append(f'<h2>Round {e(r["round_id"])}</h2><p>signed by {int(r["results"]["signatures"])} nodes</p>')
            out.append(chart(r['results']['slots']))
            out.append(slot_table(r['results']['slots']))
    out.append('</body></html>')
    return ''.join(out)


@dataclass(frozen=True)
class Limits:
    """How long and how many connections the page serves. Each connection carries one request
    (no keep-alive), so a connection's deadlines are its request's."""

    head_s: float = 5.0         # request line and headers complete within this from accept
    request_s: float = 10.0     # closed this long after accept, answered or not
    per_address: int = 4        # open connections per client address; more are closed at once
    connections: int = 64       # open connections in all
    render_threads: int = 4     # snapshots rendered at once (SQLite and node health block)


REPLY_S = 1.0  # of request_s, kept to send "busy" when rendering takes too long


class Connections:
    """The open connections by transport, oldest first, counted per client address. When every
    slot is taken, the oldest connection still sending its request head makes room: a slow client
    never holds a slot past head_s, and cannot keep out one that sends its request at once."""

    def __init__(self, limits):
        self.limits = limits
        self.open = {}  # transport -> Guard, in accept order
        self.per_address = Counter()

    def admit(self, guard):
        """Register guard's connection; False if it must be closed unanswered."""
        if self.per_address[guard.address] >= self.limits.per_address:
            return False
        if len(self.open) >= self.limits.connections:
            waiting = next((g for g in self.open.values() if not g.head_done), None)
            if waiting is None:
                return False
            waiting.abort()
        self.open[guard.transport] = guard
        self.per_address[guard.address] += 1
        return True

    def release(self, guard):
        if self.open.pop(guard.transport, None) is not None:
            self.per_address[guard.address] -= 1
            if not self.per_address[guard.address]:
                del self.per_address[guard.address]


class Guard(asyncio.Protocol):
    """aiohttp's protocol for one connection behind the admission check and the two deadlines
    (aiohttp bounds each read and header size, not the time a request may take to arrive)."""

    def __init__(self, connections, inner):
        self.connections, self.inner = connections, inner
        self.transport, self.address, self.head_done, self.admitted = None, '', False, False
        self.deadline, self._timers = 0.0, []

    def connection_made(self, transport):
        self.transport = transport
        peer = transport.get_extra_info('peername')
        self.address = peer[0] if peer else ''
        if not self.connections.admit(self):
            transport.abort()
            return
        self.admitted = True
        loop = asyncio.get_running_loop()
        limits = self.connections.limits
        self.deadline = loop.time() + limits.request_s
        self._timers = [loop.call_later(limits.head_s, self._head_late), loop.call_at(self.deadline, self.abort)]
        self.inner.connection_made(transport)

    def head_received(self):
        self.head_done = True
        self._timers[0].cancel()

    def _head_late(self):
        if not self.head_done:
            self.abort()

    def abort(self):
        self.connections.release(self)
        self.transport.abort()

    def data_received(self, data):
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self):
        return self.inner.eof_received() if self.admitted else None

    def pause_writing(self):
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self):
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc):
        for timer in self._timers:
            timer.cancel()
        self.connections.release(self)
        if self.admitted:
            self.inner.connection_lost(exc)


def reply(status: int, text: str, content_type: str, **extra: str) -> web.Response:
    """One response with the page's headers, closing the connection after it."""
    response = web.Response(status=status, text=text, content_type=content_type, charset='utf-8',
                            headers={**HEADERS, 'Server': 'mpc-market', **extra})
    response.force_close()
    return response


class OperatorPage:
    """The page served by aiohttp on its own event loop in a daemon thread."""

    def __init__(self, host, port, view, limits):
        self.view, self.limits = view, limits
        self.connections = Connections(limits)
        self._pool = futures.ThreadPoolExecutor(limits.render_threads, thread_name_prefix='operator-page-render')
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        ready = futures.Future()
        self._thread = threading.Thread(target=self._run, args=(host, port, ready), name='operator-page', daemon=True)
        self._thread.start()
        self.server_address = ready.result()

    def _run(self, host, port, ready):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(host, port, ready))
        finally:
            self._loop.close()

    async def _serve(self, host, port, ready):
        http = web.Server(self._handle, handler_cancellation=True, access_log=None, logger=PARSER_LOG,
                          keepalive_timeout=self.limits.request_s,  # our deadlines decide, not its idle timer
                          max_line_size=2048, max_field_size=2048, max_headers=32, lingering_time=0)
        try:
            # reuse_port False: no other socket may share the port and take a share of the visitors;
            # reuse_address True: a restarted broker binds again despite the closed connections'
            # TIME_WAIT (on Linux it lets no second socket listen on the port)
            server = await self._loop.create_server(lambda: Guard(self.connections, http()), host, port,
                                                    reuse_address=True, reuse_port=False, backlog=128)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(server.sockets[0].getsockname()[:2])
        await self._stopped.wait()
        server.close()
        for guard in list(self.connections.open.values()):
            guard.abort()
        await http.shutdown(1.0)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _handle(self, request):
        guard = self.connections.open.get(request.transport)
        if guard is None:  # closed (deadline, or made room) while its request was parsed
            return reply(503, 'busy\n', 'text/plain')
        guard.head_received()
        if request.method not in ('GET', 'HEAD'):
            return reply(405, 'read-only\n', 'text/plain', Allow='GET, HEAD')
        # the raw target, compared exactly: no normalisation, no query string, nothing else is served
        if request.raw_path == '/':
            render, content_type = (lambda: page(self.view.snapshot())), 'text/html'
        elif request.raw_path == '/rounds.json':
            render, content_type = (lambda: json.dumps(self.view.snapshot(), indent=1)), 'application/json'
        else:
            return reply(404, 'not found\n', 'text/plain')
        try:
            async with asyncio.timeout_at(guard.deadline - REPLY_S):
                text = await self._loop.run_in_executor(self._pool, render)
        except TimeoutError:
            return reply(503, 'busy\n', 'text/plain')
        except Exception:  # noqa: BLE001 - the broker keeps serving; the operator sees why in its log
            log.exception('operator page: rendering failed')
            return reply(500, 'error\n', 'text/plain')
        return reply(200, text, content_type)

    def shutdown(self):
        """Stop serving, close every connection and wait for the thread (at most a few seconds)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(5)


def start(address: str, view, limits: Limits = Limits()) -> 'OperatorPage':
    """Serve the page on address in a daemon thread.

    Args:
        address: "host:port" (port 0 picks a free one); only this address is bound.
        view: an OperatorView (or anything with snapshot()).
        limits: deadlines and connection caps.

    Returns:
        The OperatorPage: server_address is the bound (host, port); shutdown() stops it.

    Raises:
        OSError: the address cannot be bound.
    """
    host, port = address.rsplit(':', 1)
    return OperatorPage(host.strip('[]'), int(port), view, limits)
