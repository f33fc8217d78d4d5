"""Local runs of the flexibility market under MPC: play every offer owner (share its vectors), run
the market nodes (processes, or one party in this process for property tests) and reconstruct
each owner's activation; the mechanism itself is mpc_market.mpc.flex.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..common.errors import BadParameter, EngineError, MarketError
from ..market.config import MarketConfig
from ..market.flex import (
    DIRECTIONS,
    Activation,
    FlexCurve,
    FlexMarket,
    FlexOffer,
    FlexResult,
    activation,
    clear_flex_plain,
    curve_keys,
    curve_steps,
    request_outcomes,
)
from . import field as ff
from .flex import FlexBook
from .jobs import ORDERS_PER_CHUNK, JobDir, JobSpec, PublicOutputs
from .local import (
    MAX_NODES,
    Encoder,
    mark_ready,
    read_public_outputs,
    reconstruct,
    share_book,
    start_nodes,
    stop_nodes,
    wait_nodes,
)


def flex_result(book: FlexBook, public: PublicOutputs, values: np.ndarray, stats: dict[str, Any]) -> FlexResult:
    """The FlexResult of a run: the opened per-request values and every owner's reconstructed rows.

    Args:
        book: the run's FlexBook.
        public: the public outputs (slots: one entry per request).
        values: signed (participants, slots, FIELDS) values.
        stats: the run's figures.

    Returns:
        The FlexResult, rows in the market's order.
    """
    market = book.market
    opened = {row['request']: (None if row['level'] < 0 else int(row['level']), int(row['target_wh']))
              for row in public.slots}
    excluded = set(public.excluded) | set(public.missing)
    by_id = {r.request: r for r in market.requests}
    rows: list[Activation] = []
    for o in market.offers:
        i, j = book.participant_index.get(o.participant), book.slot_index.get(o.slot)
        dso_wh, agg_wh = (0, 0) if i is None or j is None or o.participant in excluded else \
            (int(values[i, j, 0]), int(values[i, j, 1]))
        request = (market.dso_request(market.feeder_of.get(o.participant), o.slot, o.direction) if dso_wh
                   else market.aggregator_request(o.slot, o.direction) if agg_wh else None)
        if request is None:
            rows.append(activation(market, o, None, None))
            continue
        row = activation(market, o, (request, dso_wh + agg_wh, opened[request.request][0]), market.offer_level(o))
        penalty = market.config.price_units(request.penalty_price)
        direction = (row.activated_wh if o.direction == 'up' else 0, row.activated_wh if o.direction == 'down' else 0)
        # the nodes' payment, split and rates are the row's: a mismatch is a bug
        if (row.payment, *direction, row.price_units, penalty) != tuple(int(v) for v in values[i, j, 2:7]):
            raise EngineError(f'payment of {o.participant} in slot {o.slot} differs from its activation')
        rows.append(row)
    return FlexResult(request_outcomes(market, {r: opened[r] for r in by_id}, rows), rows, sorted(excluded), stats)


def _empty(market: FlexMarket, engine: str) -> FlexResult:
    """No offer in any request slot: nothing to compute secretly (every request procures 0)."""
    result = clear_flex_plain(market)
    return replace(result, stats={'engine': engine, 'total_s': result.stats['total_s']})


def run_on_nodes(book: FlexBook, spec: JobSpec, timeout: float | None = None,
                 workdir: str | None = None) -> tuple[PublicOutputs, np.ndarray, dict[str, Any]]:
    """Run a flexibility job (its spec saved with the book's shares) on spec.nodes node processes.

    Args:
        book: the FlexBook to share.
        spec: its JobSpec.
        timeout: seconds before a stuck run is stopped.
        workdir: where the temporary job directory goes.

    Returns:
        (node 0's public outputs, the reconstructed result values, the run's figures).

    Raises:
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-flex-', dir=workdir)
    try:
        spec.save(job_dir)
        procs = start_nodes(job_dir, spec.nodes)
        try:
            share_book(book, spec, job_dir)
        except BaseException:
            stop_nodes(procs)
            raise
        mark_ready(job_dir, spec.nodes)
        wait_nodes(procs, job_dir, timeout)
        publics = read_public_outputs(job_dir, spec.nodes)
        values = reconstruct(job_dir, spec)
        return publics[0], values, {'engine': 'mpc', 'nodes': spec.nodes, 'total_s': time.perf_counter() - started,
                                    'node_timings': [p.figures.timings for p in publics]}
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def run_in_process(book: FlexBook, spec: JobSpec,
                   encode: Encoder | None = None) -> tuple[PublicOutputs, np.ndarray, dict[str, Any]]:
    """Run a flexibility job with one MPC party in this process (property tests; no secrecy).

    Args:
        book: the FlexBook to share.
        spec: its JobSpec (nodes 1).
        encode: participant indices -> vectors, instead of the book's (a test's cheating clients).

    Returns:
        (the public outputs, the result values, the run's figures).

    Raises:
        EngineError: the party failed or the runtime has several parties.
    """
    from .inprocess import single_party_runtime
    from .node import parse_args, run_party
    mpc = single_party_runtime()
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-flex-')
    try:
        spec.save(job_dir)
        share_book(book, spec, job_dir, encode=encode)
        mark_ready(job_dir, 1)
        args = parse_args(['--job', job_dir, '--index', '0', '--parties', 'in-process', '--keys', job_dir])
        try:
            mpc.run(run_party(mpc, args, spec, JobDir(job_dir).node(0), mpc.start, report=lambda line: None))
        except MarketError:
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
            raise EngineError(f'the in-process party failed: {type(exc).__name__}: {exc}') from exc
        own = JobDir(job_dir).node(0)
        values = ff.signed(ff.to_ints(np.load(own.results)))
        return own.read_public(), values, {'engine': 'mpc-in-process', 'nodes': 1,
                                           'total_s': time.perf_counter() - started}
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


def clear_flex_mpc(market: FlexMarket, nodes: int = 3, chunk: int = ORDERS_PER_CHUNK, workdir: str | None = None,
                   timeout: float | None = None, book: FlexBook | None = None) -> FlexResult:
    """Clear the flexibility market on node processes (as mpc_market.mpc.local.clear_mpc).

    Args:
        market: the requests, offers, feeders and pricing.
        nodes: market node processes, 3..MAX_NODES.
        chunk: offers streamed at once.
        workdir: where the temporary job directory goes.
        timeout: seconds before a stuck run is stopped.
        book: the FlexBook to share (default: the market's; tests pass one whose clients cheat).

    Returns:
        The FlexResult.

    Raises:
        BadParameter: nodes outside 3..MAX_NODES, or a market too large for the field.
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    if not 3 <= nodes <= MAX_NODES:
        raise BadParameter('nodes', f'nodes must be in 3..{MAX_NODES}')
    book = book or FlexBook(market)
    if not book.participants:
        return _empty(market, 'mpc')
    return flex_result(book, *run_on_nodes(book, book.spec(nodes, chunk), timeout, workdir))


def clear_flex_in_process(market: FlexMarket, chunk: int = ORDERS_PER_CHUNK, book: FlexBook | None = None,
                          encode: Encoder | None = None) -> FlexResult:
    """Clear the flexibility market with one MPC party in this process (property tests; no secrecy).

    Args:
        market: the requests, offers, feeders and pricing.
        chunk: offers streamed at once (small values exercise the chunked paths).
        book: the FlexBook to share (default: the market's).
        encode: participant indices -> vectors, instead of the book's (a test's cheating clients).

    Returns:
        The FlexResult.

    Raises:
        EngineError: the party failed or the runtime has several parties.
        BadParameter: the market is too large for the field.
    """
    book = book or FlexBook(market)
    if not book.participants:
        return _empty(market, 'mpc-in-process')
    return flex_result(book, *run_in_process(book, book.spec(1, chunk), encode))


def flex_curve_mpc(config: MarketConfig, offers: Sequence[FlexOffer], min_cohort: int, nodes: int = 3,
                   chunk: int = ORDERS_PER_CHUNK, in_process: bool = False) -> FlexCurve:
    """The aggregator's view under MPC: the community's curve per slot and direction, opened only
    where at least min_cohort participants offer (mpc_market.mpc.flex.FlexCurveView).

    Args:
        config: the market grid.
        offers: the offers (each owner shares its vectors).
        min_cohort: the least number of offering participants to open a curve (>= 1).
        nodes: market node processes, 3..MAX_NODES (ignored in process).
        chunk: offers streamed at once.
        in_process: one MPC party in this process (tests) instead of node processes.

    Returns:
        The FlexCurve, equal to market.flex.flex_curve_plain's.

    Raises:
        BadParameter: nodes outside 3..MAX_NODES or min_cohort < 1.
        EngineError: a node failed, or the nodes disagree.
    """
    if min_cohort < 1:
        raise BadParameter('min_cohort', 'min_cohort must be at least 1')
    keys = curve_keys(offers)
    if not keys:
        return FlexCurve(min_cohort, {}, [])
    if not in_process and not 3 <= nodes <= MAX_NODES:
        raise BadParameter('nodes', f'nodes must be in 3..{MAX_NODES}')
    book = FlexBook(FlexMarket(config, (), tuple(offers)), only=sorted({s for s, _ in keys}))
    spec = book.spec(1 if in_process else nodes, chunk, min_cohort)
    public, _, _ = run_in_process(book, spec) if in_process else run_on_nodes(book, spec)
    opened, steps = {}, []
    for row in public.slots:
        slot, direction = book.slots[int(row['slot'])], DIRECTIONS[int(row['direction'])]
        opened[(slot, direction)] = bool(row['open'])
        steps += curve_steps(config, slot, direction, [int(v) for v in row['at_level']])
    steps.sort(key=lambda s: (s.slot, DIRECTIONS.index(s.direction), s.level))
    return FlexCurve(min_cohort, {key: opened[key] for key in keys}, steps)
