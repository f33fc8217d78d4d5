"""The broker's read-only operator page: ``mpc-market broker --http 127.0.0.1:PORT``.

Public information only: rounds with their phase and times, the node-signed public results of
cleared rounds (per-slot prices and volumes, drawn as inline SVG charts), the counts of cleared,
excluded and missing participants, and whether each node answers its health check. Never a
market file (a zone map names participants), never the live accepted counts (operators only, over
gRPC), never a share, order, reading or identity. GET of ``/`` (HTML) and ``/rounds.json`` only;
every value is escaped, the page runs no script (Content-Security-Policy forbids it), and the
server binds only the configured address.
"""

import html
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..market.config import market_summary
from .messages import phase_name, settlement_enum

HEALTH_CACHE_S = 5.0
MAX_THREADS = 16
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


def round_summary(round_, public, settlement=None):
    """The public view of one round (public: (body, signatures) once cleared, else None; settlement:
    the signed public settlement once settled)."""
    mechanism, zones = market_summary(round_['round_id'], round_['market_toml'])
    market = {'mechanism': mechanism, 'zones': zones}
    slots = round_['slots']
    summary = {'round_id': round_['round_id'], 'state': round_phase(round_), 'day': round_['day'],
               'reason': round_['reason'] or round_['settle_reason'],
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


def chart(public_slots, width=640, height=180):
    """Inline SVG: traded Wh per slot as bars, the (largest market's) clearing price as a line."""
    rows = per_slot(public_slots)
    if not rows:
        return ''
    top_v = max([v for _, v, _ in rows] + [1])
    known = [p for _, _, p in rows if p is not None]
    low_p, high_p = (min(known), max(known)) if known else (0.0, 1.0)
    span_p = (high_p - low_p) or 1.0
    step = width / len(rows)
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30}" '
             f'role="img" aria-label="traded Wh and clearing price per slot">'
             f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#555"/>']
    for i, (slot, volume, _) in enumerate(rows):
        h = volume / top_v * (height - 10)
        parts.append(f'<rect x="{i * step + 1:.1f}" y="{height - h:.1f}" width="{max(step - 2, 1):.1f}" '
                     f'height="{h:.1f}" fill="#9cc3e6"><title>slot {slot}: {volume} Wh</title></rect>')
    points = [(i * step + step / 2, height - 10 - (p - low_p) / span_p * (height - 30))
              for i, (_, _, p) in enumerate(rows) if p is not None]
    if points:
        parts.append('<polyline fill="none" stroke="#c0392b" stroke-width="2" points="'
                     + ' '.join(f'{x:.1f},{y:.1f}' for x, y in points) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#c0392b"/>' for x, y in points]
    parts.append(f'<text x="0" y="{height + 20}" font-size="12">slots {rows[0][0]}-{rows[-1][0]}: bars traded Wh '
                 f'(max {top_v}), red line clearing price {low_p:g}-{high_p:g} per kWh</text></svg>')
    return ''.join(parts)


def slot_table(public_slots):
    rows = ''.join(f'<tr><td>{slot}</td><td>{"" if price is None else f"{price:g}"}</td><td>{volume}</td></tr>'
                   for slot, volume, price in per_slot(public_slots))
    return f'<table class="slots"><tr><th>slot</th><th>price</th><th>traded Wh</th></tr>{rows}</table>'


def page(snapshot):
    e = html.escape
    out = ['<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mpc_market broker</title>',
           '<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}'
           'td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.ok{color:#1e7d32}.down{color:#b71c1c}'
           '</style></head><body><h1>mpc_market: rounds and public results</h1>',
           f'<p>Public information only, as of {e(snapshot["generated"])}.</p><h2>Nodes</h2><p>']
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
                   f'<td>{e(r["day"])}</td><td class="phase">{e(r["state"])}</td><td>{e(r["slots"])}</td>'
                   f'<td>{e(mechanism)}</td><td>{e(r["gate_closure"])}</td><td>{e(r["readings_deadline"])}</td>'
                   f'<td>{int(r["attempts"])}</td><td>{e(count_text)}</td><td>{e(settled_text)}</td>'
                   f'<td>{e(r["reason"])}</td></tr>')
    out.append('</table>')
    for r in snapshot['rounds']:
        if r.get('results'):
            out.append(f'<h2>Round {e(r["round_id"])}</h2><p>signed by {int(r["results"]["signatures"])} nodes</p>')
            out.append(chart(r['results']['slots']))
            out.append(slot_table(r['results']['slots']))
    out.append('</body></html>')
    return ''.join(out)


class Handler(BaseHTTPRequestHandler):
    server_version = 'mpc-market'
    sys_version = ''
    timeout = 5

    def _send(self, status, body, content_type):
        data = body.encode()
        self.send_response(status)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(data)))
        for key, value in HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        view = self.server.view
        if self.path == '/':
            self._send(200, page(view.snapshot()), 'text/html; charset=utf-8')
        elif self.path == '/rounds.json':
            self._send(200, json.dumps(view.snapshot(), indent=1), 'application/json')
        else:
            self._send(404, 'not found\n', 'text/plain; charset=utf-8')

    do_HEAD = do_GET

    def _refuse(self):
        self._send(405, 'read-only\n', 'text/plain; charset=utf-8')

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

    def log_message(self, format, *args):  # noqa: A002 - no request line (paths are attacker text) in the log
        pass


class BoundedServer(ThreadingHTTPServer):
    """At most MAX_THREADS requests at once; more are closed unanswered."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, address, view):
        self.view, self._slots = view, threading.BoundedSemaphore(MAX_THREADS)
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def start(address, view):
    """Serve the page on address ("host:port") in a daemon thread; returns the server (shutdown())."""
    host, port = address.rsplit(':', 1)
    server = BoundedServer((host, int(port)), view)
    threading.Thread(target=server.serve_forever, name='operator-page', daemon=True).start()
    return server
