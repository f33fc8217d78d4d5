"""Prometheus metrics of a node, the broker or the aggregator: ``GET /metrics`` on ``metrics = "host:port"``.

One ``CollectorRegistry`` per process (``REGISTRY``; a daemon is one process). What is counted,
all of it public or operational, never an identity or a per-participant value:

- ``mpc_market_rpc_requests_total{method, code}``: every unary RPC by method and gRPC status name
  (counted by ``RequestCounter``, the outermost interceptor of ``server.run_server``);
- ``mpc_market_submissions_accepted_total{kind}`` and ``..._refused_total{kind, reason}``: orders,
  readings and meter-days, item by item (a batch counts each item); reason is the status code name
  of the refusal (``ALREADY_EXISTS``, ``UNAUTHENTICATED``, ...);
- ``mpc_market_admission_refusals_total{reason}``: requests turned away before any work;
- ``mpc_market_mpc_sessions_total{phase, outcome}``, ``mpc_market_mpc_session_seconds{phase}`` and
  ``mpc_market_mpc_session_sent_bytes{phase}`` (histograms), ``mpc_market_mpc_session_peak_rss_bytes``:
  the clearing and settlement sessions of a node;
- at scrape time: ``mpc_market_rounds{phase}`` (rounds in the store by phase; of them the flexibility
  rounds: ``mpc_market_flex_rounds{phase}``), ``mpc_market_store_bytes``
  (the SQLite file with its WAL), ``mpc_market_peak_rss_bytes{process}`` (getrusage of this process and
  of its finished children, the MPyC sessions), plus prometheus_client's ``process_*`` metrics.

No label takes a round id either: a label value per round would grow without bound.

The text is served by mpc_market.net.metrics_endpoint (aiohttp, imported only by a process that
serves it: its import costs a daemon about 0.1 s of CPU at start-up). An operator page on the same
process can serve ``metrics_text()`` itself.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable, Iterable, Iterator

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from ..common.errors import BadParameter
from .store import SqliteStore

__all__ = ['REGISTRY', 'metrics_text', 'count_submissions', 'count_admission_refusal', 'record_session',
           'RequestCounter', 'watch_store', 'set_role']

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

KINDS = ('order', 'readings', 'meter_day')
ADMISSION_REASONS = ('too_many_items', 'busy', 'client_in_flight', 'client_rate')
PHASES = ('clearing', 'settlement')
OUTCOMES = ('done', 'failed', 'final_failure')
ROUND_PHASES = ('open', 'closed', 'clearing', 'cleared', 'failed', 'readings', 'settling', 'settled', 'settle-failed')

ROLE = Gauge('mpc_market_daemon', 'this process: 1 for its role', ['role'], registry=REGISTRY)
REQUESTS = Counter('mpc_market_rpc_requests', 'unary gRPC requests answered, by method and status code',
                   ['method', 'code'], registry=REGISTRY)
ACCEPTED = Counter('mpc_market_submissions_accepted', 'submitted items stored (orders, readings, meter-days)',
                   ['kind'], registry=REGISTRY)
REFUSED = Counter('mpc_market_submissions_refused', 'submitted items refused, by status code name',
                  ['kind', 'reason'], registry=REGISTRY)
ADMISSION = Counter('mpc_market_admission_refusals', 'requests turned away by admission control before any work',
                    ['reason'], registry=REGISTRY)
SESSIONS = Counter('mpc_market_mpc_sessions', 'MPC sessions run by this node, by phase and outcome',
                   ['phase', 'outcome'], registry=REGISTRY)
SESSION_SECONDS = Histogram('mpc_market_mpc_session_seconds', 'wall time of a finished MPC session', ['phase'],
                            buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600), registry=REGISTRY)
SESSION_BYTES = Histogram('mpc_market_mpc_session_sent_bytes', 'bytes this node sent to the other nodes in a '
                          'finished MPC session', ['phase'],
                          buckets=tuple(10 ** e for e in range(3, 12)), registry=REGISTRY)
SESSION_PEAK = Gauge('mpc_market_mpc_session_peak_rss_bytes', 'peak resident memory of the last finished MPC '
                     'session process', ['phase'], registry=REGISTRY)

for _kind in KINDS:  # every series exists from the start: a dashboard's rate() sees the first event
    ACCEPTED.labels(_kind)
for _reason in ADMISSION_REASONS:
    ADMISSION.labels(_reason)
for _phase in PHASES:
    SESSION_SECONDS.labels(_phase)
    SESSION_BYTES.labels(_phase)
    for _outcome in OUTCOMES:
        SESSIONS.labels(_phase, _outcome)


def metrics_text() -> tuple[bytes, str]:
    """The registry in Prometheus' text format.

    Returns:
        (body, content type) for an HTTP reply.
    """
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def set_role(role: str) -> None:
    """Name this process's role (``node``, ``broker``, ``aggregator``) in ``mpc_market_daemon``."""
    ROLE.labels(role).set(1)


def count_submissions(kind: str, outcomes: Iterable[object], status_name: Callable[[BaseException], str]) -> None:
    """Count submitted items: each outcome is an exception (refused, with status_name(exc) as the
    reason) or anything else (accepted).

    Raises:
        BadParameter: kind is not one of KINDS.
    """
    if kind not in KINDS:
        raise BadParameter('kind', f'unknown submission kind {kind!r}')
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            REFUSED.labels(kind, status_name(outcome)).inc()
        else:
            ACCEPTED.labels(kind).inc()


def count_admission_refusal(reason: str) -> None:
    """Count one request turned away by admission control (reason: one of ADMISSION_REASONS).

    Raises:
        BadParameter: an unknown reason (labels are a fixed set).
    """
    if reason not in ADMISSION_REASONS:
        raise BadParameter('reason', f'unknown admission refusal {reason!r}')
    ADMISSION.labels(reason).inc()


def record_session(phase: str, outcome: str, seconds: float, sent_bytes: int | None = None,
                   peak_rss_mb: float | None = None) -> None:
    """Record a finished clearing or settlement session of this node.

    Args:
        phase: 'clearing' or 'settlement'.
        outcome: 'done', 'failed' (retried) or 'final_failure' (deterministic, not retried).
        seconds: wall time of the session.
        sent_bytes: bytes sent to the other nodes (known for a finished session).
        peak_rss_mb: peak resident memory of the session's process in MB.

    Raises:
        BadParameter: an unknown phase or outcome.
    """
    if phase not in PHASES or outcome not in OUTCOMES:
        raise BadParameter('phase', f'unknown session phase or outcome {phase!r}, {outcome!r}')
    SESSIONS.labels(phase, outcome).inc()
    SESSION_SECONDS.labels(phase).observe(seconds)
    if sent_bytes is not None:
        SESSION_BYTES.labels(phase).observe(sent_bytes)
    if peak_rss_mb is not None:
        SESSION_PEAK.labels(phase).set(peak_rss_mb * 1e6)


class RequestCounter(grpc.ServerInterceptor):
    """Counts every unary-unary RPC by method name and final status code (OK when none was set)."""

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The method's handler, counting its calls (as is for an unknown method)."""
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:  # unknown methods are no label: names come from clients
            return handler
        method, inner = handler_call_details.method.rsplit('/', 1)[-1], handler.unary_unary

        def counted(request: object, context: grpc.ServicerContext) -> object:
            try:
                reply = inner(request, context)
            except BaseException:
                code = context.code()
                REQUESTS.labels(method, code.name if isinstance(code, grpc.StatusCode) else 'UNKNOWN').inc()
                raise
            code = context.code()
            REQUESTS.labels(method, code.name if isinstance(code, grpc.StatusCode) else 'OK').inc()
            return reply
        return grpc.unary_unary_rpc_method_handler(counted, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def _rss_bytes(ru_maxrss: int) -> int:
    return ru_maxrss * (1 if sys.platform == 'darwin' else 1024)  # bytes on macOS, KiB on Linux


class _ProcessPeak:
    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily('mpc_market_peak_rss_bytes', 'peak resident memory (getrusage): this process, '
                                   'and the largest of its finished children', labels=['process'])
        family.add_metric(['self'], _rss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
        family.add_metric(['children'], _rss_bytes(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
        yield family


REGISTRY.register(_ProcessPeak())


class _StoreCollector:
    """Store size and, for a node's or the broker's store, its rounds by phase, read at scrape time."""

    def __init__(self, store: SqliteStore, rounds: bool):
        self.store, self.rounds = store, rounds

    def phases(self, flex: bool = False) -> dict[str, int]:
        """{phase: rounds} (every phase of ROUND_PHASES, 0 when none); flex: flexibility rounds only."""
        from .messages import phase_name, settlement_enum
        counts = dict.fromkeys(ROUND_PHASES, 0)
        for state, settlement, deadline, count in self.store.round_phase_rows(flex):
            phase = phase_name(state, settlement_enum(state, deadline, settlement))
            counts[phase] = counts.get(phase, 0) + count
        return counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The store's size and, with rounds, its rounds by phase."""
        size = GaugeMetricFamily('mpc_market_store_bytes', 'size of the SQLite store with its write-ahead log')
        size.add_metric([], sum(os.path.getsize(p) for p in (self.store.path, self.store.path + '-wal')
                                if os.path.exists(p)))
        yield size
        if self.rounds:
            rounds = GaugeMetricFamily('mpc_market_rounds', 'rounds in the store by phase', labels=['phase'])
            for phase, count in sorted(self.phases().items()):
                rounds.add_metric([phase], count)
            yield rounds
            flex = GaugeMetricFamily('mpc_market_flex_rounds', 'flexibility rounds in the store by phase (also '
                                     'counted in mpc_market_rounds)', labels=['phase'])
            for phase, count in sorted(self.phases(flex=True).items()):
                flex.add_metric([phase], count)
            yield flex


def watch_store(store: SqliteStore, rounds: bool = False, registry: CollectorRegistry = REGISTRY) -> None:
    """Report a store's size (its ``path`` and WAL) at every scrape and, with rounds, its rounds by phase.

    Once per process and registry.

    Args:
        store: the process's store.
        rounds: it has a rounds table (a node's or the broker's store: ``round_phase_rows``).
        registry: where the metrics go.

    Raises:
        ValueError: the registry has these metrics already.
    """
    registry.register(_StoreCollector(store, rounds))
