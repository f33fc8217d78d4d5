"""Local runs of the flexibility market under MPC: play every offer owner (share its vectors), run
the market nodes (processes, or one party in this process for property tests) and reconstruct
each owner's activation; the mechanism itself is mpc_market.mpc.flex.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..common.errors import BadParameter, EngineError, MarketError
from ..market.flex import Activation, FlexMarket, FlexResult, activation, clear_flex_plain, request_outcomes
from . import field as ff
from .flex import FlexBook
from .jobs import ORDERS_PER_CHUNK, JobDir, PublicOutputs
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
        if row.payment != int(values[i, j, 2]):  # the nodes' payment is the row's: a mismatch is a bug
            raise EngineError(f'payment of {o.participant} in slot {o.slot} differs from its activation')
        rows.append(row)
    return FlexResult(request_outcomes(market, {r: opened[r] for r in by_id}, rows), rows, sorted(excluded), stats)


def _empty(market: FlexMarket, engine: str) -> FlexResult:
    """No offer in any request slot: nothing to compute secretly (every request procures 0)."""
    result = clear_flex_plain(market)
    return replace(result, stats={'engine': engine, 'total_s': result.stats['total_s']})


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
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-flex-', dir=workdir)
    try:
        spec = book.spec(nodes, chunk)
        spec.save(job_dir)
        procs = start_nodes(job_dir, nodes)
        try:
            share_book(book, spec, job_dir)
        except BaseException:
            stop_nodes(procs)
            raise
        mark_ready(job_dir, nodes)
        wait_nodes(procs, job_dir, timeout)
        publics = read_public_outputs(job_dir, nodes)
        values = reconstruct(job_dir, spec)
        stats = {'engine': 'mpc', 'nodes': nodes, 'total_s': time.perf_counter() - started,
                 'node_timings': [p.figures.timings for p in publics]}
        return flex_result(book, publics[0], values, stats)
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)


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
    from .inprocess import single_party_runtime
    from .node import parse_args, run_party
    mpc = single_party_runtime()
    book = book or FlexBook(market)
    if not book.participants:
        return _empty(market, 'mpc-in-process')
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-flex-')
    try:
        spec = book.spec(1, chunk)
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
        return flex_result(book, own.read_public(), values,
                           {'engine': 'mpc-in-process', 'nodes': 1, 'total_s': time.perf_counter() - started})
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
