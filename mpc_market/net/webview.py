"""The broker's read-only operator console: ``mpc-market broker --http 127.0.0.1:PORT``.

Public information only: rounds with their phase and times (newest first, a page of
ROUNDS_PER_PAGE at a time), the node-signed public results of cleared rounds shown for what
their mechanism publishes (a double auction's clearing price and volume per slot; a community
scheme's buy and sell prices; a zoned market's price and volume per zone, the cross-zone auction
and the network fees), the public money totals derived from them, the counts of cleared,
excluded and missing participants and of the settlement, and the last known health of each node
with its age. Never a zone map (it names participants), never the live accepted counts
(operators only, over gRPC), never a share, order, reading or identity.

Pages: ``/`` (``/?page=N``), ``/round/ID``, ``/rounds.json`` (``/rounds.json?page=N``) and, when
the broker provides one, ``/metrics``. GET and HEAD only; every value is escaped, the page runs no
script (Content-Security-Policy forbids it) and refreshes itself with a meta refresh, and the
server binds only the configured address. A failed round shows a generic reason; the broker's
own text (node addresses, exception messages) stays with operators (``round status`` over gRPC).
Node health is polled in the background (Nodes.serving(), short gRPC deadlines): a page never
waits on a node.

Served by aiohttp, whose parser bounds request lines and headers, behind an admission check of our
own (Guard): a connection is closed if its request head has not arrived head_s after accept, and
in any case request_s after accept; each client address holds at most per_address connections.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypedDict, cast

from aiohttp import web

from ..common.days import is_day
from ..common.errors import InputError
from ..common.names import is_name
from ..market.config import MarketConfig, format_fixed, parse_config
from .httpserver import Gate, HTTPThread, split_address
from .messages import phase_name, settlement_enum
from .store import Round

log = logging.getLogger('mpc_market.broker.page')
# aiohttp logs every malformed request with a traceback quoting it: a visitor could fill the
# broker's log, so its messages go to a logger that keeps only critical ones
PARSER_LOG = logging.getLogger('mpc_market.broker.page.http')
PARSER_LOG.setLevel(logging.CRITICAL)
HEALTH_POLL_S = 5.0     # between two background health polls of every node
REFRESH_S = 30          # the page's meta refresh
ROUNDS_PER_PAGE = 20
MAX_PAGE = 100_000      # ?page=N: 1..MAX_PAGE, ASCII digits
SLOT_MINUTES = 15       # slot k of a delivery day starts k x 15 min after 00:00 UTC (generate, calendar)
PRICE_UNIT = 'currency/kWh'
HEADERS = {
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:",
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-store',
}
FAILED_PHASES = ('failed', 'settle-failed')


def iso(unix_ms: int) -> str:
    """ISO 8601 UTC time of unix milliseconds, to the second.

    Args:
        unix_ms: milliseconds since 1970-01-01T00:00:00Z.

    Returns:
        e.g. 2026-12-01T12:00:00Z.
    """
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _minute(iso_time: str | None) -> str:
    """An ISO 8601 time to the minute (2026-12-01T12:00Z), for the round list."""
    return iso_time[:16] + 'Z' if iso_time else '-'


def slot_start(slot: int) -> str:
    """When a slot of the delivery day starts.

    Args:
        slot: its number (0 at 00:00 UTC, SLOT_MINUTES each).

    Returns:
        hh:mm (UTC), with ' +Nd' for slots past the day's end.
    """
    days, minutes = divmod(slot * SLOT_MINUTES, 24 * 60)
    return f'{minutes // 60:02d}:{minutes % 60:02d}' + (f' +{days}d' if days else '')


def round_phase(round_: Round) -> str:
    """A stored round's phase in one word.

    Args:
        round_: the stored round.

    Returns:
        messages.phase_name of its state and settlement ('open', ..., 'settle-failed').
    """
    return phase_name(round_.state, settlement_enum(round_.state, round_.readings_deadline_ms, round_.settlement))


# what a visitor learns of a failure: which phase, and whether a node could not be reached or
# the nodes' signed bodies differed; never the stored text (addresses, exception messages)
FAILURES = {'reason': ('clearing failed at a node', 'the nodes did not sign the same public results'),
            'settle_reason': ('settlement failed at a node', 'the nodes did not sign the same public settlement')}


def public_reason(round_: Round) -> str:
    """A generic note for a round's stored failure reason ('' if none).

    Args:
        round_: a stored round (its reason and settle_reason as the broker wrote them).

    Returns:
        One of a few fixed phrases, never the stored text itself.
    """
    for field, (failed, disagree) in FAILURES.items():
        text = getattr(round_, field)
        if text:
            if 'unreachable' in text:
                return 'a node was unreachable'
            return disagree if 'disagree' in text else failed
    return ''


# -- the public results of one round, as each mechanism publishes them ---------------------------

def _market_config(round_id: str, text: str) -> MarketConfig | None:
    try:
        return parse_config(f'round {round_id}', text)
    except InputError:
        return None


def market_fields(config: MarketConfig | None) -> dict[str, Any]:
    """The round's public market parameters (decimal strings); never the zone map.

    Args:
        config: the parsed market, or None if its text does not parse.

    Returns:
        mechanism, zone names, price floor, ceiling, tick and network fee with their unit, and the
        flexibility market's pricing.
    """
    if config is None:
        return {'mechanism': '?', 'zones': []}
    return {'mechanism': config.mechanism, 'zones': list(config.zone_names) if config.zoned else [],
            'price_floor': str(config.price_floor), 'price_ceiling': str(config.price_ceiling),
            'tick': str(config.tick), 'network_fee': str(config.network_fee), 'price_unit': PRICE_UNIT,
            'flex_pricing': config.flex_pricing}


def _price(text: str | None) -> str | None:
    """A published price ('' when the market did not trade) as a decimal string or None."""
    if text in ('', None):
        return None
    try:
        return str(Decimal(text))
    except InvalidOperation:
        return None


def _value_units(config: MarketConfig | None, price: str | None, wh: int) -> int | None:
    """Price x energy in exact amount units (10**-(decimals+3) currency), None without a price."""
    if config is None or price is None:
        return None
    units = Decimal(price) * config.price_scale
    if units != units.to_integral_value():
        return None
    return int(units) * int(wh)


def _amount(config: MarketConfig | None, units: int | None) -> str | None:
    return None if units is None or config is None else format_fixed(units, config.decimals + 3)


def _amount_units(config: MarketConfig | None, text: str | None) -> int:
    if config is None or text in ('', None):
        return 0
    return int(Decimal(text) * 10 ** (config.decimals + 3))


def _market(config: MarketConfig | None, row: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    price, wh = _price(row.get('price')), int(row.get('traded_wh') or 0)
    value = _value_units(config, price, wh)
    return {'price': price, 'traded_wh': wh, 'residual_wh': int(row.get('residual_wh') or 0),
            'value': _amount(config, value)}, value


def results_view(config: MarketConfig | None, body: dict[str, Any], signatures: int, day: str = '') -> dict[str, Any]:
    """The console's view of a round's signed public body.

    Args:
        config: the round's market (None if it does not parse: no money figures then).
        body: the signed public body (messages.public_body) as parsed JSON.
        signatures: how many nodes signed it.
        day: the delivery day (YYYY-MM-DD; '' if none): each slot's start_unix_ms then.

    Returns:
        kind ('double-auction', 'scheme' or 'zoned'), counts, per-slot rows (prices as decimal
        strings in currency/kWh, energy in Wh, slot numbers and start times) and totals.
    """
    if body.get('kind') == 'flex':
        return flex_results_view(config, body, signatures)
    rows = body.get('slots', [])
    kind = ('scheme' if any('buy_price' in r for r in rows) else
            'zoned' if any('market' in r for r in rows) else 'double-auction')
    by_slot: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_slot.setdefault(int(row['slot']), []).append(row)
    slots: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    midnight = (int(datetime.strptime(day, '%Y-%m-%d').replace(tzinfo=UTC).timestamp() * 1000)
                if is_day(day) else None)

    def start(slot: int) -> dict[str, Any]:
        return {'slot': slot, 'start': slot_start(slot),
                'start_unix_ms': None if midnight is None else midnight + slot * SLOT_MINUTES * 60_000}
    if kind == 'scheme':
        for slot, (row, *_) in sorted(by_slot.items()):
            slots.append({**start(slot), 'buy_price': _price(row.get('buy_price')),
                          'sell_price': _price(row.get('sell_price'))})
    elif kind == 'double-auction':
        traded = residual = value = 0
        for slot, (row, *_) in sorted(by_slot.items()):
            market, units = _market(config, row)
            slots.append({**start(slot), **market})
            traded += market['traded_wh']
            residual += market['residual_wh']
            value += units or 0
        totals = {'traded_wh': traded, 'residual_wh': residual, 'value': _amount(config, value)}
    else:
        zones = sorted({r['market'][5:] for r in rows if r.get('market', '').startswith('zone:')})
        per_zone = {z: [0, 0] for z in zones}
        cross_wh = cross_value = fees = 0
        for slot, markets in sorted(by_slot.items()):
            entry = {**start(slot), 'zones': []}
            for row in markets:
                name = row.get('market', '')
                if name.startswith('zone:'):
                    market, units = _market(config, row)
                    entry['zones'].append({'zone': name[5:], **market})
                    per_zone[name[5:]][0] += market['traded_wh']
                    per_zone[name[5:]][1] += units or 0
                elif name == 'cross':
                    entry['cross'], units = _market(config, row)
                    cross_wh, cross_value = cross_wh + entry['cross']['traded_wh'], cross_value + (units or 0)
                elif name == 'network-operator':
                    fee = _amount_units(config, row.get('fee_amount'))
                    entry['network_fee'] = {'fee': _price(row.get('price')),
                                            'traded_wh': int(row.get('traded_wh') or 0),
                                            'fee_amount': _amount(config, fee)}
                    fees += fee
            entry['zones'].sort(key=lambda z: z['zone'])
            slots.append(entry)
        totals = {'zones': [{'zone': z, 'traded_wh': wh, 'value': _amount(config, v)}
                            for z, (wh, v) in per_zone.items()],
                  'cross': {'traded_wh': cross_wh, 'value': _amount(config, cross_value)},
                  'traded_wh': sum(wh for wh, _ in per_zone.values()) + cross_wh,
                  'value': _amount(config, sum(v for _, v in per_zone.values()) + cross_value),
                  'network_fees': _amount(config, fees)}
    return {'kind': kind, 'mechanism': body.get('mechanism', ''), 'participants': int(body['participants']),
            'excluded': int(body['excluded']), 'missing': int(body['missing']), 'signatures': signatures,
            'price_unit': PRICE_UNIT, 'energy_unit': 'Wh', 'amount_unit': 'currency', 'slots': slots, 'totals': totals,
            # the DSO's per-zone planned net positions (feeder_min_cohort): which zones, not the values
            'feeder_zones': sorted({str(f.get('feeder')) for f in body.get('feeder_positions') or []
                                    if isinstance(f, dict)})}


def flex_results_view(config: MarketConfig | None, body: dict[str, Any], signatures: int) -> dict[str, Any]:
    """The console's view of a flexibility round's signed body (net.flexround.flex_public_body).

    Args:
        config: the round's market (None if it does not parse: no prices then).
        body: the signed body as parsed JSON.
        signatures: how many nodes signed it.

    Returns:
        kind 'flex', counts, per request its slot, volume, price (currency/kWh), procured and
        shortfall Wh, and the totals; no per-slot rows.
    """
    requests = [{'request': str(r['request']), 'slot': int(r['slot']), 'volume_wh': int(r['volume_wh']),
                 'price': (config.format_price(int(r['price_units'])) if config and r['price_units'] is not None
                           else None),
                 'procured_wh': int(r['procured_wh']), 'shortfall_wh': int(r['shortfall_wh'])}
                for r in body.get('requests', [])]
    return {'kind': 'flex', 'mechanism': 'flex', 'participants': int(body['participants']),
            'excluded': int(body['excluded']), 'missing': int(body['missing']), 'signatures': signatures,
            'price_unit': PRICE_UNIT, 'energy_unit': 'Wh', 'slots': [], 'requests': requests,
            'totals': {'procured_wh': sum(r['procured_wh'] for r in requests),
                       'shortfall_wh': sum(r['shortfall_wh'] for r in requests)}}


def requests_table(results: dict[str, Any]) -> str:
    """A flexibility round's public outcome per request (HTML)."""
    e = html.escape
    out = ['<table class="requests"><tr><th>request</th><th class="n">slot</th><th class="n">requested kWh</th>'
           f'<th class="n">price ({PRICE_UNIT})</th><th class="n">procured kWh</th>'
           '<th class="n">shortfall kWh</th></tr>']
    for r in results['requests']:
        out.append(f'<tr><td>{e(r["request"])}</td><td class="n">{int(r["slot"])}</td>'
                   f'<td class="n">{_kwh(r["volume_wh"])}</td><td class="n">{e(r["price"] or "-")}</td>'
                   f'<td class="n">{_kwh(r["procured_wh"])}</td><td class="n">{_kwh(r["shortfall_wh"])}</td></tr>')
    return ''.join(out) + '</table>'


class Failures:
    """When this page first saw each round in a failed phase (the store keeps no failure time)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}  # round id -> (failed phase, first seen unix ms)
        self._lock = threading.Lock()

    def since(self, round_id: str, phase: str, now_ms: int) -> int | None:
        """When the round was first seen in this failed phase (a phase that is not failed forgets it).

        Args:
            round_id: the round.
            phase: its phase now (round_phase).
            now_ms: unix ms now.

        Returns:
            Unix ms of the first sight in this failed phase, None if the phase is not a failed one.
        """
        with self._lock:
            if phase not in FAILED_PHASES:
                self._seen.pop(round_id, None)
                return None
            seen = self._seen.get(round_id)
            if seen is None or seen[0] != phase:
                self._seen[round_id] = seen = (phase, now_ms)
            return seen[1]


Published = tuple[str, dict[int, bytes]]  # a signed public body and its signatures (BrokerStore.public)


def round_summary(round_: Round, public: Published | None, settlement: Published | None = None,
                  failed_since_ms: int | None = None) -> dict[str, Any]:
    """The public view of one round.

    Args:
        round_: the stored round.
        public: its signed public results (body, signatures) once cleared, else None.
        settlement: the signed public settlement once settled, else None.
        failed_since_ms: when the page first saw it fail (unix ms; None: not failed).

    Returns:
        The round's summary (JSON-serialisable): phase, times, market, results and settlement.
    """
    config = _market_config(round_.round_id, round_.market_toml)
    phase = round_phase(round_)
    deadline = round_.readings_deadline_ms
    summary: dict[str, Any]  # filled in below: results, settlement
    summary = {'round_id': round_.round_id, 'kind': round_.kind, 'phase': phase, 'state': phase,
               'day': round_.day or None,
               'failed': phase in FAILED_PHASES, 'reason': public_reason(round_),
               'failed_since': iso(failed_since_ms) if failed_since_ms else None,
               'failed_since_unix_ms': failed_since_ms or None,
               'will_retry': (phase == 'failed' and not round_.final)
               or (phase == 'settle-failed' and not round_.settle_final),
               'slots': [int(s) for s in round_.slots], 'slot_minutes': SLOT_MINUTES,
               'gate_closure': iso(round_.gate_closure_ms), 'gate_closure_unix_ms': round_.gate_closure_ms,
               'readings_deadline': iso(deadline) if deadline else None, 'readings_deadline_unix_ms': deadline or None,
               'attempts': int(round_.attempts), 'settle_attempts': int(round_.settle_attempts),
               'market': market_fields(config), 'results': None, 'settlement': None,
               'energy_round': round_.energy_round or None}
    if public is not None:
        summary['results'] = results_view(config, json.loads(public[0]), len(public[1]), round_.day)
    if settlement is not None:
        body = json.loads(settlement[0])
        counts = ('settled', 'metered', 'missing_readings', 'invalid_readings')
        summary['settlement'] = {k: int(body[k]) for k in counts} | {'signatures': len(settlement[1]),
                                                                      'flex_round': body.get('flex_round') or None}
    return summary


# -- node health, polled in the background ------------------------------------------------------

class NodeHealth(TypedDict):
    """One node's last known health."""

    serving: bool | None    # None: not checked yet
    checked_ms: int | None
    since_ms: int | None    # when serving last changed


def _unchecked() -> NodeHealth:
    return {'serving': None, 'checked_ms': None, 'since_ms': None}


class Health:
    """The last known health of every node: serving or not, when checked, since when so."""

    NOT_SERVING = 'no SERVING answer to its health check'

    def __init__(self, nodes: int = 0) -> None:
        self._lock = threading.Lock()
        self._nodes = [_unchecked() for _ in range(nodes)]

    def record(self, serving: Sequence[object], at_ms: int) -> None:
        """Store one poll's answers (a different number of nodes starts afresh).

        Args:
            serving: node i answered SERVING when serving[i] is true.
            at_ms: unix ms of the poll.
        """
        with self._lock:
            if len(self._nodes) != len(serving):
                self._nodes = [_unchecked() for _ in serving]
            for node, ok in zip(self._nodes, serving, strict=True):
                if node['serving'] is not bool(ok):
                    node['since_ms'] = at_ms
                node['serving'], node['checked_ms'] = bool(ok), at_ms

    def view(self, now_ms: int) -> list[dict[str, Any]]:
        """Every node's last known health as of now_ms.

        Args:
            now_ms: unix ms now (for the age of each check).

        Returns:
            [{node, serving (None: not checked yet), checked, age_s, since, reason, ...}] by node.
        """
        with self._lock:
            nodes = [n.copy() for n in self._nodes]
        out: list[dict[str, Any]] = []
        for i, n in enumerate(nodes):
            checked, since = n['checked_ms'], n['since_ms']
            out.append({'node': i, 'serving': n['serving'],
                        'checked': iso(checked) if checked else None, 'checked_unix_ms': checked,
                        'age_s': max(0, (now_ms - checked) // 1000) if checked else None,
                        'since': iso(since) if since else None, 'since_unix_ms': since,
                        'reason': self.NOT_SERVING if n['serving'] is False else ''})
        return out


def now_ms() -> int:
    """Unix time in milliseconds.

    Returns:
        Milliseconds since 1970-01-01T00:00:00Z.
    """
    return int(time.time() * 1000)


class PublicStore(Protocol):
    """What the page reads of the broker's store (net.broker.BrokerStore)."""

    def rounds(self) -> list[Round]:
        """Every round, oldest first."""

    def get(self, round_id: str) -> Round | None:
        """One round (None: no such round)."""

    def public(self, round_id: str, table: str = ...) -> Published | None:
        """A round's signed public body and its signatures from table (None: none yet)."""


class NodeChecks(Protocol):
    """The broker's nodes as the page polls them (net.broker.Nodes)."""

    def serving(self) -> Sequence[object]:
        """Per node whether its health check answers SERVING (short deadlines)."""


class View(Protocol):
    """What the page shows: an OperatorView, or anything with snapshot(page)."""

    def snapshot(self, page: int = ...) -> dict[str, Any] | None:
        """The console's state with one page of rounds (None: no such page)."""


class OperatorView:
    """Snapshots of the broker's public state for the page. Node health is whatever the last
    background poll (poll_health, run by the page every HEALTH_POLL_S) found: never waited for."""

    def __init__(self, store: PublicStore, nodes: NodeChecks) -> None:
        self.store, self.nodes = store, nodes
        self.health = Health(len(getattr(nodes, 'addresses', ())))
        self.failures = Failures()

    def poll_health(self) -> None:
        """Ask every node (blocking, Nodes.serving()'s short deadlines) and record the answers.

        Raises:
            Exception: whatever the nodes' check raises (the page logs it and keeps the last state).
        """
        serving = self.nodes.serving()
        self.health.record(serving, now_ms())

    def _summary(self, round_: Round, at_ms: int) -> dict[str, Any]:
        round_id = round_.round_id
        return round_summary(round_, self.store.public(round_id), self.store.public(round_id, 'settlement_public'),
                             self.failures.since(round_id, round_phase(round_), at_ms))

    def snapshot(self, page: int = 1) -> dict[str, Any] | None:
        """The console's state with the page-th ROUNDS_PER_PAGE rounds, newest first.

        Args:
            page: 1 for the newest rounds.

        Returns:
            The snapshot (JSON-serialisable), or None if there is no such page.
        """
        at = now_ms()
        rounds = list(reversed(self.store.rounds()))
        pages = max(1, -(-len(rounds) // ROUNDS_PER_PAGE))
        if not 1 <= page <= pages:
            return None
        failed: list[dict[str, object]] = []
        for r in rounds:
            phase = round_phase(r)
            since = self.failures.since(r.round_id, phase, at)
            if since is not None and len(failed) < 10:
                failed.append({'round_id': r.round_id, 'phase': phase, 'reason': public_reason(r),
                               'since': iso(since), 'since_unix_ms': since})
        shown = [self._summary(r, at) for r in rounds[(page - 1) * ROUNDS_PER_PAGE:page * ROUNDS_PER_PAGE]]
        latest = next((s for s in shown if s['results']), None)
        if latest is None:
            newest = next((r for r in rounds if self.store.public(r.round_id) is not None), None)
            latest = self._summary(newest, at) if newest else None
        return {'generated': iso(at), 'generated_unix_ms': at, 'refresh_s': REFRESH_S,
                'page': page, 'pages': pages, 'per_page': ROUNDS_PER_PAGE, 'rounds_total': len(rounds),
                'failed_rounds': failed, 'rounds': shown, 'latest': latest['round_id'] if latest else None,
                'latest_round': latest, 'nodes': self.health.view(at)}

    def round(self, round_id: str) -> dict[str, Any] | None:
        """One round's summary with the console's header fields.

        Args:
            round_id: the round (anything else than a round name finds none).

        Returns:
            {generated, refresh_s, round, nodes, ...}, None if there is no such round.
        """
        round_ = self.store.get(round_id) if is_name(round_id) else None
        if round_ is None or round_.round_id != round_id:
            return None
        at = now_ms()
        return {'generated': iso(at), 'generated_unix_ms': at, 'refresh_s': REFRESH_S,
                'round': self._summary(round_, at), 'nodes': self.health.view(at)}


# -- SVG charts ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Series:
    """One line or bar stack of a chart: a value per slot (None: none in that slot)."""

    label: str
    colour: str
    values: tuple[float | None, ...]
    dashed: bool = False


PALETTE = ('#1f77b4', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f')
CROSS_COLOUR, BUY_COLOUR, SELL_COLOUR, PRICE_COLOUR = '#d62728', '#d62728', '#2ca02c', '#d62728'


def nice_axis(low: float, high: float, target: int = 5) -> tuple[float, float, float, int]:
    """An axis covering low..high in 1-2-2.5-5 steps.

    Args:
        low: the least value shown.
        high: the greatest (an empty range is widened).
        target: about how many steps.

    Returns:
        (bottom, top, step, decimals of a tick label).
    """
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    bottom = math.floor(low / step + 1e-9) * step
    top = math.ceil(high / step - 1e-9) * step
    exponent = Decimal(repr(round(step, 12))).normalize().as_tuple().exponent
    decimals = max(0, -exponent) if isinstance(exponent, int) else 0  # a finite step: always an int
    return bottom, top, step, decimals


def _label_every(count: int) -> int:
    """Label every k-th slot: at most 12 labels, on whole hours when there are many slots."""
    return next(k for k in (1, 2, 4, 8, 12, 16, 24, 48, 96, 192, 384, 768, 1536) if count / k <= 12) \
        if count <= 12 * 1536 else -(-count // 12)


def chart(title: str, slots: list[int], series: list[Series], y_title: str, unit: str, bars: bool = False,
          y_low: float = 0.0, y_high: float | None = None, day: str | None = None,
          refs: tuple[tuple[float, str], ...] = ()) -> str:
    """An inline SVG chart of per-slot values: stacked bars or lines with points.

    Args:
        title: the heading inside the chart.
        slots: the slot numbers along the x axis (labelled with their start time, hh:mm UTC).
        series: the Series drawn (their values align with slots).
        y_title: the y axis title, including its unit.
        unit: the unit of a value in tooltips.
        bars: stacked bars (volumes) instead of lines (prices).
        y_low: the lowest the y axis may start at (0, or a negative price floor).
        y_high: the least top of the y axis (None: from the data).
        day: the delivery day, named under the x axis.
        refs: (value, label) reference lines drawn dashed (the market's price floor and ceiling).

    Returns:
        The <svg> element.
    """
    width, height, left, right, top, bottom = 800, 270, 74, 76, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    if bars:
        stacked = [sum(s.values[i] or 0 for s in series) for i in range(len(slots))]
        high = max(stacked + [0])
    else:
        high = max(values + [0])
    low = min([y_low] + values + [v for v, _ in refs])
    y0, y1, step, decimals = nice_axis(low, max([high * 1.08, y_high or 0, low + 1e-9] + [v for v, _ in refs]))
    n = len(slots)
    slot_w = plot_w / max(n, 1)

    def y(v: float) -> float:
        return top + plot_h - (v - y0) / (y1 - y0) * plot_h

    def x(i: int) -> float:
        return left + (i + 0.5) * slot_w
    e = html.escape
    out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{e(title)}" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="{left}" y="16" font-size="13" font-weight="bold">{e(title)}</text>']
    # legend, right-aligned on the title line
    legend_x: float = width - right
    for s in reversed(series):
        legend_x -= 14 + 6.5 * len(s.label) + 16
        out.append(f'<rect x="{legend_x:.1f}" y="7" width="12" height="10" fill="{s.colour}"/>'
                   f'<text x="{legend_x + 16:.1f}" y="16">{e(s.label)}</text>')
    ticks = round((y1 - y0) / step)
    for k in range(ticks + 1):
        v = y0 + k * step
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="{"#444" if abs(v) < step / 1e6 else "#ddd"}"/>'
                   f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.{decimals}f}</text>')
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">{e(y_title)}</text>'
               f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + plot_h}" stroke="#444"/>'
               f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#444"/>')
    for v, label in refs:
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#888" '
                   f'stroke-dasharray="6 4"/><text x="{left + plot_w + 4}" y="{y(v) + 4:.1f}" '
                   f'fill="#555">{e(label)}</text>')  # right of the plot: never over a line
    every = _label_every(n)
    for i, slot in enumerate(slots):
        if i % every == 0:
            out.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{top + plot_h}" y2="{top + plot_h + 4}" '
                       'stroke="#444"/>'
                       f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" '
                       f'text-anchor="middle">{e(slot_start(slot))}</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{height - 8}" text-anchor="middle">slot start, UTC'
               f'{e(" of " + day) if day else ""} ({SLOT_MINUTES}-minute slots)</text>')
    if bars:
        base = [0.0] * n
        for s in series:
            for i, value in enumerate(s.values):
                if not value:
                    continue
                y_top, y_base = y(base[i] + value), y(base[i])
                out.append(f'<rect x="{left + i * slot_w + slot_w * 0.12:.1f}" y="{y_top:.1f}" '
                           f'width="{max(slot_w * 0.76, 0.5):.1f}" height="{max(y_base - y_top, 0.5):.1f}" '
                           f'fill="{s.colour}"><title>{e(slot_start(slots[i]))} (slot {slots[i]}) {e(s.label)}: '
                           f'{value:g} {e(unit)}</title></rect>')
                base[i] += value
    else:
        for s in series:
            run: list[tuple[float, float]] = []
            for i, value in enumerate([*s.values, None]):
                if value is not None:
                    run.append((x(i), y(value)))
                    continue
                if len(run) > 1:
                    out.append(f'<polyline fill="none" stroke="{s.colour}" stroke-width="2" '
                               + ('stroke-dasharray="5 3" ' if s.dashed else '') + 'points="'
                               + ' '.join(f'{px:.1f},{py:.1f}' for px, py in run) + '"/>')
                run = []
            out += [f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="{3 if n <= 96 else 1.5}" fill="{s.colour}">'
                    f'<title>{e(slot_start(slots[i]))} (slot {slots[i]}) {e(s.label)}: {v:g} {e(unit)}</title></circle>'
                    for i, v in enumerate(s.values) if v is not None]
    out.append('</svg>')
    return ''.join(out)


def _energy_unit(max_wh: float) -> tuple[int, str]:
    """(divisor, unit) for volumes: kWh from 10 kWh up, else Wh."""
    return (1000, 'kWh') if max_wh >= 10_000 else (1, 'Wh')


def _floor(market: dict[str, Any]) -> float:
    try:
        return min(0.0, float(market['price_floor']))
    except (KeyError, ValueError):
        return 0.0


def charts(summary: dict[str, Any]) -> str:
    """The price and volume charts of a cleared round, for what its mechanism publishes.

    Args:
        summary: round_summary() of a cleared round.

    Returns:
        Two inline SVG charts (a scheme's: one, its prices); '' without slots.
    """
    results, market, day = summary['results'], summary['market'], summary['day']
    rows = results['slots']
    if not rows:
        return ''
    slots = [r['slot'] for r in rows]

    def num(v: str | None) -> float | None:
        return None if v is None else float(v)
    price_title = f'price ({PRICE_UNIT})'
    low = _floor(market)
    refs = tuple((float(market[k]), f'{word} {market[k]}') for k, word in
                 (('price_floor', 'floor'), ('price_ceiling', 'ceiling')) if k in market)
    if results['kind'] == 'scheme':
        prices = [Series('buy price', BUY_COLOUR, tuple(num(r['buy_price']) for r in rows)),
                  Series('sell price', SELL_COLOUR, tuple(num(r['sell_price']) for r in rows), dashed=True)]
        return chart(f'{market["mechanism"]}: buy and sell price per slot', slots, prices, price_title, PRICE_UNIT,
                     y_low=low, day=day, refs=refs)
    if results['kind'] == 'double-auction':
        prices = [Series('clearing price', PRICE_COLOUR, tuple(num(r['price']) for r in rows))]
        volumes = [('traded', PALETTE[0], [r['traded_wh'] for r in rows])]
    else:
        zones = [z['zone'] for z in results['totals']['zones']]
        colour = {z: PALETTE[i % len(PALETTE)] for i, z in enumerate(zones)}

        def zone_values(zone: str, key: str) -> list[Any]:
            return [next((num(z[key]) if key == 'price' else z[key] for z in r['zones'] if z['zone'] == zone), None)
                    for r in rows]
        prices = [Series(f'zone {z}', colour[z], tuple(zone_values(z, 'price'))) for z in zones]
        prices.append(Series('cross-zone', CROSS_COLOUR, tuple(num(r.get('cross', {}).get('price')) for r in rows)))
        volumes = [(f'zone {z}', colour[z], zone_values(z, 'traded_wh')) for z in zones]
        volumes.append(('cross-zone', CROSS_COLOUR, [r.get('cross', {}).get('traded_wh', 0) for r in rows]))
    stacked = [sum(v[i] or 0 for _, _, v in volumes) for i in range(len(rows))]
    divisor, unit = _energy_unit(max(stacked + [0]))
    volume_series = [Series(label, c, tuple(None if v is None else v / divisor for v in values))
                     for label, c, values in volumes]
    return (chart('clearing price per slot' if results['kind'] == 'double-auction' else 'price per market and slot',
                  slots, prices, price_title, PRICE_UNIT, y_low=low, day=day, refs=refs)
            + chart('traded energy per slot', slots, volume_series, f'traded ({unit})', unit, bars=True, day=day))


# -- HTML ---------------------------------------------------------------------------------------

STYLE = ('body{font-family:sans-serif;margin:1.2em 1.6em;color:#222}'
         'h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em}'
         'table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}'
         'th{background:#f3f3f3}td.n,th.n{text-align:right}.ok{color:#1e7d32}.down{color:#b71c1c;font-weight:bold}'
         'tr.failed td{background:#fdecea}tr.down td{background:#fdecea}.muted{color:#666}'
         '.alert{background:#fdecea;border:1px solid #e0a8a4;padding:.4em .8em;margin:.4em 0}'
         '.chart{display:block;margin:.6em 0;border:1px solid #eee}nav a{margin-right:1em}'
         '.facts th{width:15em}table.rounds{font-size:.88em}table.rounds td{white-space:nowrap}'
         'table.rounds td:last-child{min-width:10em}table.rounds td:last-child{white-space:normal}')


def _head(title: str, refresh: int) -> str:
    e = html.escape
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{int(refresh)}"><title>{e(title)}</title>'
            f'<style>{STYLE}</style></head><body>')


def _header(snapshot: dict[str, Any], heading: str) -> str:
    e = html.escape
    return (f'<h1>{e(heading)}</h1><p class="muted">Public information only, as of {e(snapshot["generated"])}; '
            f'this page refreshes every {int(snapshot.get("refresh_s", REFRESH_S))} s. '
            f'Prices in {PRICE_UNIT}, energy in Wh unless stated, times ISO 8601 UTC.</p>')


def _age(seconds: int | None) -> str:
    if seconds is None:
        return ''
    return f'{seconds} s ago' if seconds < 120 else f'{seconds // 60} min ago'


def nodes_table(nodes: list[dict[str, Any]]) -> str:
    """The nodes' last known health with its age; a node not serving is highlighted.

    Args:
        nodes: Health.view().

    Returns:
        The heading and table (HTML).
    """
    e = html.escape
    out = ['<h2>Nodes</h2><table class="nodes"><tr><th>node</th><th>health</th><th>in this state since</th>'
           '<th>last checked</th><th>note</th></tr>']
    for n in nodes:
        if n['serving'] is None:
            cls, word = 'muted', 'not checked yet'
        else:
            cls, word = ('ok', 'serving') if n['serving'] else ('down', 'not serving')
        out.append(f'<tr class="{"down" if n["serving"] is False else "node"}" id="node{int(n["node"])}">'
                   f'<td>node {int(n["node"])}</td><td class="{cls}">{word}</td>'
                   f'<td>{e(n.get("since") or "-")}</td>'
                   f'<td>{e(n.get("checked") or "-")} {e(_age(n.get("age_s")))}</td>'
                   f'<td>{e(n.get("reason") or "")}</td></tr>')
    out.append('</table>')
    return ''.join(out)


def _slot_range(slots: list[int], times: bool = True) -> str:
    if not slots:
        return ''
    contiguous = slots == list(range(slots[0], slots[-1] + 1))
    text = (f'{slots[0]}-{slots[-1]}' if contiguous
            else ','.join(map(str, slots[:6])) + ('...' if len(slots) > 6 else ''))
    end = '24:00' if (slots[-1] + 1) * SLOT_MINUTES == 24 * 60 else slot_start(slots[-1] + 1)
    return f'{text} ({len(slots)} slots, {slot_start(slots[0])}-{end})' if times else f'{text} ({len(slots)})'


def _mechanism(summary: dict[str, Any]) -> str:
    market = summary['market']
    if summary.get('kind') == 'flex':  # the round's kind, whatever its market file's mechanism
        return 'flexibility'
    zones = market.get('zones') or []
    return market['mechanism'] + (f', {len(zones)} zones' if zones else '')


def _kwh(wh: int) -> str:
    return format_fixed(int(wh), 3)


def _traded(summary: dict[str, Any]) -> tuple[str, str]:
    results = summary['results']
    if not results:
        return '-', '-'
    if results['kind'] == 'scheme':
        return 'not published', '-'
    if results['kind'] == 'flex':  # procured flexibility; its payments are private
        return _kwh(results['totals']['procured_wh']), '-'
    totals = results['totals']
    return _kwh(totals['traded_wh']), totals.get('value') or '-'


def rounds_table(snapshot: dict[str, Any]) -> str:
    """The page's rounds, newest first; failed rounds highlighted with their reason and time.

    Args:
        snapshot: OperatorView.snapshot().

    Returns:
        The table with its footnotes (HTML).
    """
    e = html.escape
    out = ['<table class="rounds"><tr><th>round</th><th>day</th><th>phase</th><th>slots</th><th>mechanism</th>'
           '<th>gate closure</th><th>readings until</th><th class="n">attempts</th>'
           '<th>participants<sup>1</sup></th><th>readings<sup>2</sup></th>'
           '<th class="n">traded kWh</th><th class="n">trade value</th><th>note</th></tr>']
    for r in snapshot['rounds']:
        counts, settled = r.get('results'), r.get('settlement')
        count_text = f'{counts["participants"]} / {counts["excluded"]} / {counts["missing"]}' if counts else '-'
        settled_text = (f'{settled["metered"]} / {settled["missing_readings"]} / {settled["invalid_readings"]}'
                        if settled else '-')
        traded, value = _traded(r)
        note = r['reason'] + (f' (since {r["failed_since"]})' if r.get('failed_since') else '')
        rid = e(r['round_id'])
        out.append(f'<tr class="round{" failed" if r["failed"] else ""}" data-round="{rid}">'
                   f'<td><a href="/round/{rid}">{rid}</a></td><td>{e(r["day"] or "-")}</td>'
                   f'<td class="phase">{e(r["phase"])}</td><td>{e(_slot_range(r["slots"], times=False))}</td>'
                   f'<td>{e(_mechanism(r))}</td><td>{e(_minute(r["gate_closure"]))}</td>'
                   f'<td>{e(_minute(r["readings_deadline"]))}</td><td class="n">{int(r["attempts"])}</td>'
                   f'<td>{e(count_text)}</td><td>{e(settled_text)}</td><td class="n">{e(traded)}</td>'
                   f'<td class="n">{e(value)}</td><td>{e(note)}</td></tr>')
    out.append('</table><p class="muted"><sup>1</sup> cleared / excluded / missing; <sup>2</sup> metered / missing / '
               'invalid; trade value in currency (price x traded energy, sellers\' side; fees not included).</p>')
    return ''.join(out)


def _cell(value: object, numeric: bool = True) -> str:
    text = '-' if value is None or value == '' else str(value)
    return f'<td class="n">{html.escape(text)}</td>' if numeric else f'<td>{html.escape(text)}</td>'


def slot_table(results: dict[str, Any]) -> str:
    """Every published figure per slot, with the slot's start time.

    Args:
        results: results_view() of a cleared round.

    Returns:
        The table (HTML).
    """
    e = html.escape
    rows = results['slots']
    if results['kind'] == 'scheme':
        head = ('<tr><th class="n">slot</th><th>start</th><th class="n">buy price</th>'
                '<th class="n">sell price</th></tr>')
        body = ''.join(f'<tr><td class="n">{r["slot"]}</td><td>{e(r["start"])}</td>{_cell(r["buy_price"])}'
                       f'{_cell(r["sell_price"])}</tr>' for r in rows)
    elif results['kind'] == 'double-auction':
        head = ('<tr><th class="n">slot</th><th>start</th><th class="n">clearing price</th><th class="n">traded Wh</th>'
                '<th class="n">residual Wh</th><th class="n">trade value</th></tr>')
        body = ''.join(f'<tr><td class="n">{r["slot"]}</td><td>{e(r["start"])}</td>{_cell(r["price"])}'
                       f'{_cell(r["traded_wh"])}{_cell(r["residual_wh"])}{_cell(r["value"])}</tr>' for r in rows)
    else:
        zones = [z['zone'] for z in results['totals']['zones']]
        head = ('<tr><th rowspan="2" class="n">slot</th><th rowspan="2">start</th>'
                + ''.join(f'<th colspan="2">zone {e(z)}</th>' for z in zones)
                + '<th colspan="2">cross-zone auction</th><th colspan="2">network fees</th></tr><tr>'
                + '<th class="n">price</th><th class="n">traded Wh</th>' * (len(zones) + 1)
                + '<th class="n">per kWh</th><th class="n">amount</th></tr>')
        body = ''
        for r in rows:
            by_zone = {z['zone']: z for z in r['zones']}
            cross, fee = r.get('cross') or {}, r.get('network_fee') or {}
            body += (f'<tr><td class="n">{r["slot"]}</td><td>{e(r["start"])}</td>'
                     + ''.join(_cell(by_zone.get(z, {}).get('price')) + _cell(by_zone.get(z, {}).get('traded_wh'))
                               for z in zones)
                     + _cell(cross.get('price')) + _cell(cross.get('traded_wh'))
                     + _cell(fee.get('fee')) + _cell(fee.get('fee_amount')) + '</tr>')
    return f'<table class="slots">{head}{body}</table>'


def totals_table(results: dict[str, Any]) -> str:
    """The public money and energy totals of a round (exact decimal figures).

    Args:
        results: results_view() of a cleared round.

    Returns:
        The table (HTML; a scheme's: a note that it publishes no totals).
    """
    e = html.escape
    totals = results['totals']
    if results['kind'] == 'scheme':
        return ('<p class="muted">A community scheme publishes only the buy and sell price of each slot; its volumes '
                'and money stay with the participants and the settlement.</p>')
    out = ['<table class="totals"><tr><th>market</th><th class="n">traded kWh</th><th class="n">trade value '
           '(currency)</th></tr>']
    if results['kind'] == 'zoned':
        for z in totals['zones']:
            out.append(f'<tr><td>zone {e(z["zone"])}</td>{_cell(_kwh(z["traded_wh"]))}{_cell(z["value"])}</tr>')
        out.append(f'<tr><td>cross-zone auction (sellers\' side)</td>{_cell(_kwh(totals["cross"]["traded_wh"]))}'
                   f'{_cell(totals["cross"]["value"])}</tr>')
        out.append(f'<tr><td>network fees on cross-zone energy</td>{_cell(_kwh(totals["cross"]["traded_wh"]))}'
                   f'{_cell(totals["network_fees"])}</tr>')
    label = 'all markets (fees not included)' if results['kind'] == 'zoned' else 'round total'
    out.append(f'<tr><th>{label}</th>{_cell(_kwh(totals["traded_wh"]))}{_cell(totals["value"])}</tr></table>')
    return ''.join(out)


def round_detail(summary: dict[str, Any], heading: bool = True, slots: bool = True) -> str:
    """A round's facts, charts, totals and per-slot table.

    Args:
        summary: round_summary().
        heading: begin with the round's heading.
        slots: with the per-slot table (else a link to the round's page).

    Returns:
        The HTML fragment.
    """
    e = html.escape
    market, results, settled = summary['market'], summary['results'], summary['settlement']
    out = [f'<h2>Round {e(summary["round_id"])}</h2>' if heading else '', '<table class="facts">']

    def fact(name: str, value: object, cls: str = '') -> None:
        attribute = f' class="{cls}"' if cls else ''
        out.append(f'<tr{attribute}><th>{e(name)}</th><td>{e(str(value))}</td></tr>')
    fact('phase', summary['phase'] + (f': {summary["reason"]}' if summary['reason'] else '')
         + (f' (since {summary["failed_since"]})' if summary.get('failed_since') else ''),
         'failed' if summary['failed'] else '')
    fact('delivery day', summary['day'] or '-')
    fact('slots', _slot_range(summary['slots']) or '-')
    zones = market.get('zones') or []
    flex = summary.get('kind') == 'flex'
    fact('mechanism', f'flexibility (requests per feeder and the community, {market.get("flex_pricing", "?")})'
         if flex else
         market['mechanism'] + (f'; zones {", ".join(zones)}; network fee {market.get("network_fee")} '
                                             f'{PRICE_UNIT} on cross-zone energy' if zones else ''))
    if 'tick' in market:
        fact('price range', f'{market["price_floor"]} to {market["price_ceiling"]} {PRICE_UNIT}, '
                            f'tick {market["tick"]}')
    fact('gate closure', summary['gate_closure'])
    fact('readings until', summary['readings_deadline'] or 'no settlement')
    fact('attempts', f'clearing {summary["attempts"]}, settlement {summary["settle_attempts"]}')
    if results:
        fact('cleared / excluded / missing participants',
             f'{results["participants"]} / {results["excluded"]} / {results["missing"]} '
             f'(results signed by {results["signatures"]} nodes)')
    if summary.get('energy_round'):
        fact('delivered in', f'the settlement of energy round {summary["energy_round"]}')
    if results and results.get('feeder_zones'):
        zones_released = results['feeder_zones']
        fact('feeder positions released', f'{len(zones_released)} zones ({", ".join(zones_released)})')
    if settled:
        fact('settled / metered / missing / invalid readings',
             f'{settled["settled"]} / {settled["metered"]} / {settled["missing_readings"]} / '
             f'{settled["invalid_readings"]} (signed by {settled["signatures"]} nodes)')
        if settled.get('flex_round'):
            fact('flexibility delivered', f'round {settled["flex_round"]}: deviations from the adjusted positions')
    out.append('</table>')
    if results and results['kind'] == 'flex':
        out.append(requests_table(results))
    elif results:
        out += [charts(summary), totals_table(results)]
        if slots:
            out.append(slot_table(results))
        else:
            rid = e(summary['round_id'])
            out.append(f'<p><a href="/round/{rid}">every slot of round {rid}</a></p>')
    return ''.join(out)


def _pages_nav(snapshot: dict[str, Any]) -> str:
    page, pages = snapshot.get('page', 1), snapshot.get('pages', 1)
    links = []
    if page > 1:
        links.append(f'<a href="/?page={page - 1}">newer rounds</a>')
    if page < pages:
        links.append(f'<a href="/?page={page + 1}">older rounds</a>')
    return (f'<nav>page {int(page)} of {int(pages)} ({int(snapshot.get("rounds_total", len(snapshot["rounds"])))} '
            f'rounds, newest first) {"".join(links)} <a href="/rounds.json?page={int(page)}">as JSON</a></nav>')


def page(snapshot: dict[str, Any]) -> str:
    """The console's main page: nodes, failures, the rounds of one page and the latest results.

    Args:
        snapshot: OperatorView.snapshot().

    Returns:
        The HTML document.
    """
    e = html.escape
    out = [_head('mpc_market operator console', snapshot.get('refresh_s', REFRESH_S)),
           _header(snapshot, 'mpc_market operator console: rounds and public results')]
    down = [n for n in snapshot['nodes'] if n['serving'] is False]
    for n in down:
        out.append(f'<p class="alert">node {int(n["node"])}: not serving since {e(n.get("since") or "?")} '
                   f'({e(n.get("reason") or "")}; last checked {e(_age(n.get("age_s")))})</p>')
    for f in snapshot.get('failed_rounds', []):
        rid = e(f['round_id'])
        out.append(f'<p class="alert">round <a href="/round/{rid}">{rid}</a> {e(f["phase"])} '
                   f'since {e(f["since"])}: {e(f["reason"] or "see round status")}</p>')
    out.append(nodes_table(snapshot['nodes']))
    out.append('<h2>Rounds</h2>' + _pages_nav(snapshot) + rounds_table(snapshot))
    latest = snapshot.get('latest_round')
    if latest:
        out.append(f'<h2>Latest results: round '
                   f'<a href="/round/{e(latest["round_id"])}">{e(latest["round_id"])}</a></h2>')
        out.append(round_detail(latest, heading=False, slots=False))
    out.append('</body></html>')
    return ''.join(out)


def round_page(view: dict[str, Any]) -> str:
    """The page of one round (/round/ID).

    Args:
        view: OperatorView.round().

    Returns:
        The HTML document.
    """
    summary = view['round']
    out = [_head(f'round {summary["round_id"]}: mpc_market', view['refresh_s']),
           _header(view, f'mpc_market round {summary["round_id"]}'), '<nav><a href="/">all rounds</a></nav>',
           round_detail(summary, heading=False), nodes_table(view['nodes']), '</body></html>']
    return ''.join(out)


def rounds_json(snapshot: dict[str, Any]) -> str:
    """The text of /rounds.json.

    Args:
        snapshot: OperatorView.snapshot().

    Returns:
        The snapshot without the page's copy of the latest round, as compact JSON.
    """
    return json.dumps({k: v for k, v in snapshot.items() if k != 'latest_round'}, separators=(',', ':'))


PAGE_QUERY = re.compile(r'page=([0-9]{1,6})', re.ASCII)


def page_number(query: str) -> int | None:
    """The page a query string asks for.

    Args:
        query: the request target after '?' ('' for page 1).

    Returns:
        1..MAX_PAGE, None if the query is anything but page=N (ASCII digits) in that range.
    """
    if query == '':
        return 1
    match = PAGE_QUERY.fullmatch(query)
    number = int(match.group(1)) if match else 0
    return number if 1 <= number <= MAX_PAGE else None


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

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open: dict[asyncio.Transport, Guard] = {}  # in accept order
        self.per_address: Counter[str] = Counter()

    def admit(self, guard: Guard) -> bool:
        """Register guard's connection (its transport and address are set).

        Args:
            guard: a connection just accepted.

        Returns:
            False if it must be closed unanswered (its address is at its cap, or every slot is
            taken by a connection whose request head has arrived).
        """
        if guard.transport is None or self.per_address[guard.address] >= self.limits.per_address:
            return False  # (no transport: never, connection_made sets it first)
        if len(self.open) >= self.limits.connections:
            waiting = next((g for g in self.open.values() if not g.head_done), None)
            if waiting is None:
                return False
            waiting.abort()
        self.open[guard.transport] = guard
        self.per_address[guard.address] += 1
        return True

    def release(self, guard: Guard) -> None:
        """Forget guard's connection (nothing if it is not open)."""
        if guard.transport is not None and self.open.pop(guard.transport, None) is not None:
            self.per_address[guard.address] -= 1
            if not self.per_address[guard.address]:
                del self.per_address[guard.address]


class Guard(Gate):
    """aiohttp's protocol for one connection behind the admission check and the two deadlines
    (aiohttp bounds each read and header size, not the time a request may take to arrive)."""

    def __init__(self, connections: Connections, inner: asyncio.Protocol) -> None:
        super().__init__(inner)
        self.connections = connections
        self.address, self.head_done = '', False
        self.deadline = 0.0  # loop time the connection is closed at
        self._timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection with its two deadlines, or abort it (Connections.admit)."""
        transport = cast(asyncio.Transport, transport)  # a server's stream connection
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

    def head_received(self) -> None:
        """The request head has arrived: the head deadline no longer applies."""
        self.head_done = True
        self._timers[0].cancel()

    def _head_late(self) -> None:
        if not self.head_done:
            self.abort()

    def abort(self) -> None:
        """Close the connection at once and free its slot."""
        self.connections.release(self)
        if self.transport is not None:  # always: set in connection_made
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop its deadlines, free its slot and tell aiohttp (nothing for one never admitted)."""
        for timer in self._timers:
            timer.cancel()
        self.connections.release(self)
        if self.admitted:
            self.inner.connection_lost(exc)


def reply(status: int, text: str, content_type: str, **extra: str) -> web.Response:
    """One response with the page's headers, closing the connection after it.

    Args:
        status: the HTTP status.
        text: the body.
        content_type: its type (sent with charset utf-8).
        extra: more headers.

    Returns:
        The response.
    """
    response = web.Response(status=status, text=text, content_type=content_type, charset='utf-8',
                            headers={**HEADERS, 'Server': 'mpc-market', **extra})
    response.force_close()
    return response


Metrics = Callable[[], tuple[bytes | str, str]]  # GET /metrics: (exposition body, content type)
# what a known target renders in a render thread (a page's text, or the metrics hook's reply; None:
# not found) and its content type (None: the metrics hook names its own)
Route = tuple[Callable[[], object], str | None]


class OperatorPage:
    """The page served by aiohttp on its own event loop in a daemon thread."""

    def __init__(self, host: str, port: int, view: View, limits: Limits, metrics: Metrics | None = None) -> None:
        """Bind and serve.

        Args:
            host: the address to bind (only this one).
            port: its port (0 picks a free one).
            view: what the pages show (an OperatorView's node health is polled in the background).
            limits: deadlines and connection caps.
            metrics: the hook for GET /metrics (None: not served).

        Raises:
            OSError: the address cannot be bound.
        """
        self.view, self.limits, self.metrics = view, limits, metrics
        self.connections = Connections(limits)
        self._pool = futures.ThreadPoolExecutor(limits.render_threads, thread_name_prefix='operator-page-render')
        # its own thread: a poll waiting on a hung node never takes a render thread
        self._health_pool = futures.ThreadPoolExecutor(1, thread_name_prefix='operator-page-health')
        self._poller: asyncio.Task[None] | None = None
        self._http = HTTPThread('operator-page', host, port, self._handle, lambda inner: Guard(self.connections, inner),
                                backlog=128, handler_cancellation=True, logger=PARSER_LOG,
                                keepalive_s=limits.request_s,  # our deadlines decide, not its idle timer
                                on_stop=self._stop, executors=[self._pool, self._health_pool])
        self.server_address = self._http.server_address

    async def _poll_health(self, view: OperatorView) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self._health_pool, view.poll_health)
            except Exception:  # noqa: BLE001 - the page shows the last known state and its age
                log.exception('operator page: health poll failed')
            await asyncio.sleep(HEALTH_POLL_S)

    def _stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for guard in list(self.connections.open.values()):
            guard.abort()

    def _route(self, raw_path: str) -> Route | str | None:
        """(render, content type) of a request target, compared exactly; None: not found; a str: a bad query."""
        path, _, query = raw_path.partition('?')
        view = self.view
        if path in ('/', '/rounds.json'):
            number = page_number(query)
            if number is None:
                return 'page must be a whole number 1..100000\n' if query.startswith('page=') else None
            if path == '/':
                return (lambda: (lambda s: s and page(s))(view.snapshot(number))), 'text/html'
            return (lambda: (lambda s: s and rounds_json(s))(view.snapshot(number))), 'application/json'
        if path.startswith('/round/') and not query and is_name(path[7:]) and isinstance(view, OperatorView):
            return (lambda: (lambda r: r and round_page(r))(view.round(path[7:]))), 'text/html'
        if raw_path == '/metrics' and self.metrics is not None:
            return self.metrics, None  # renders (body, its own content type)
        return None

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        transport = request.transport
        guard = self.connections.open.get(transport) if transport is not None else None
        if guard is None:  # closed (deadline, or made room) while its request was parsed
            return reply(503, 'busy\n', 'text/plain')
        guard.head_received()
        loop = asyncio.get_running_loop()
        if self._poller is None and isinstance(self.view, OperatorView):
            # polled from the first visit on, not from start: a poll while the nodes are still
            # starting would put the broker's channels into reconnect backoff, failing its first calls
            self._poller = loop.create_task(self._poll_health(self.view))
        if request.method not in ('GET', 'HEAD'):
            return reply(405, 'read-only\n', 'text/plain', Allow='GET, HEAD')
        # the raw target, parsed strictly: no normalisation, only the known paths and page=N
        route = self._route(request.raw_path)
        if route is None:
            return reply(404, 'not found\n', 'text/plain')
        if isinstance(route, str):
            return reply(400, route, 'text/plain')
        render, content_type = route
        try:
            async with asyncio.timeout_at(guard.deadline - REPLY_S):
                text = await loop.run_in_executor(self._pool, render)
        except TimeoutError:
            return reply(503, 'busy\n', 'text/plain')
        except Exception:  # noqa: BLE001 - the broker keeps serving; the operator sees why in its log
            log.exception('operator page: rendering failed')
            return reply(500, 'error\n', 'text/plain')
        if text is None:
            return reply(404, 'not found\n', 'text/plain')
        if content_type is None:  # /metrics: the hook's (body, its own content type)
            body, content_type = cast(tuple[bytes | str, str], text)
            response = web.Response(status=200, body=body.encode() if isinstance(body, str) else body,
                                    headers={**HEADERS, 'Server': 'mpc-market', 'Content-Type': content_type})
            response.force_close()
            return response
        return reply(200, cast(str, text), content_type)  # a page's render: its text

    def shutdown(self) -> None:
        """Stop serving, close every connection and wait for the thread (at most a few seconds)."""
        self._http.shutdown()


def start(address: str, view: View, limits: Limits = Limits(), metrics: Metrics | None = None) -> OperatorPage:
    """Serve the page on address in a daemon thread.

    Args:
        address: "host:port" (port 0 picks a free one); only this address is bound.
        view: an OperatorView (its node health is then polled in the background), or anything
            with snapshot(page).
        limits: deadlines and connection caps.
        metrics: the hook for GET /metrics: a function returning (exposition body, content type),
            the broker's mpc_market.net.metrics.metrics_text; None: /metrics is not served.

    Returns:
        The OperatorPage: server_address is the bound (host, port); shutdown() stops it.

    Raises:
        OSError: the address cannot be bound.
    """
    host, port = split_address(address)
    return OperatorPage(host, port, view, limits, metrics)
