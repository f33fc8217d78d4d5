"""Local runs of the flexibility market under MPC: play every offer owner (share its vectors), run
the market nodes (processes, or one party in this process for property tests) and reconstruct
each owner's activation; the mechanism itself is mpc_market.mpc.flex.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..common.errors import BadParameter, EngineError, MarketError
from ..market import settlement
from ..market.book import Book
from ..market.config import MarketConfig
from ..market.flex import (
    DIRECTIONS,
    Activation,
    FlexCurve,
    FlexMarket,
    FlexOffer,
    FlexResult,
    FlexSettlement,
    activation,
    clear_flex_plain,
    curve_keys,
    curve_steps,
    request_outcomes,
)
from ..market.orders import Order
from . import field as ff
from .flex import FlexBook
from .jobs import ORDERS_PER_CHUNK, JobDir, JobSpec, PublicOutputs, job_spec
from .local import (
    MAX_NODES,
    Encoder,
    ephemeral_node_keys,
    free_ports,
    mark_ready,
    read_public_outputs,
    reconstruct,
    share_book,
    start_nodes,
    stop_nodes,
    wait_nodes,
)
from .supervisor import PartyProcess


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


def run_on_nodes(book: FlexBook, spec: JobSpec, timeout: float | None = None, workdir: str | None = None,
                 keep: str | None = None) -> tuple[PublicOutputs, np.ndarray, dict[str, Any]]:
    """Run a flexibility job (its spec saved with the book's shares) on spec.nodes node processes.

    Args:
        book: the FlexBook to share.
        spec: its JobSpec.
        timeout: seconds before a stuck run is stopped.
        workdir: where the temporary job directory goes.
        keep: a new directory to run the job in and keep (the delivery session reads its shares).

    Returns:
        (node 0's public outputs, the reconstructed result values, the run's figures).

    Raises:
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    started = time.perf_counter()
    job_dir = keep or tempfile.mkdtemp(prefix='mpc-market-flex-', dir=workdir)
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
        if keep is None:
            shutil.rmtree(job_dir, ignore_errors=True)


def run_in_process(book: FlexBook, spec: JobSpec, encode: Encoder | None = None,
                   keep: str | None = None) -> tuple[PublicOutputs, np.ndarray, dict[str, Any]]:
    """Run a flexibility job with one MPC party in this process (property tests; no secrecy).

    Args:
        book: the FlexBook to share.
        spec: its JobSpec (nodes 1).
        encode: participant indices -> vectors, instead of the book's (a test's cheating clients).
        keep: a new directory to run the job in and keep.

    Returns:
        (the public outputs, the result values, the run's figures).

    Raises:
        EngineError: the party failed or the runtime has several parties.
    """
    from .inprocess import single_party_runtime
    from .node import parse_args, run_party
    mpc = single_party_runtime()
    started = time.perf_counter()
    job_dir = keep or tempfile.mkdtemp(prefix='mpc-market-flex-')
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
        if keep is None:
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


# -- delivery and settlement under MPC ---------------------------------------------------------



def delivery_book(market: FlexMarket, orders: Sequence[Order], readings: Mapping[tuple[str, int], int]) -> Book:
    """The delivery session's rows: every energy order and reading, and every row of the clearing
    (FlexBook's: each owner of an offer in a request slot, in every request slot)."""
    slots = set(market.request_slots)
    owners = {o.participant for o in market.offers if o.slot in slots}
    pairs = set(readings) | {(p, s) for p in owners for s in slots}
    return Book(market.config, list(orders), extra_pairs=sorted(pairs, key=lambda k: (k[1], k[0])))


def delivery_packages(book: Book, readings: Mapping[tuple[str, int], int], rows: Any) -> np.ndarray:
    """The meter packages (the settlement's, against the planned position) of the given rows; a
    pair without a reading carries the missing-reading rule's net (what it bought)."""
    from ..market.book import encode_readings
    order_of = {(o.participant, o.slot): o for o in book.orders}
    net_of = {(p, s): readings.get((p, s), settlement.missing_reading_net(order_of.get((p, s))))
              for p in book.participants for s in book.slots}
    return encode_readings(book, net_of, rows, read=readings)


async def delivery_party(job_dir: str, index: int, start_links: Callable[[], Awaitable[None]],
                         report: Callable[[str], None] = print) -> None:
    """One party of a delivery session: the energy job's order shares, its meter packages and the
    clearing's kept result shares in, DeliveryShares out (mpc.flex.settle_delivery).

    Args:
        job_dir: the session's job directory.
        index: this party's index.
        start_links: awaited first (connects the parties).
        report: where 'connected' goes (the supervisor's watchdog).
    """
    from mpyc.runtime import mpc

    from . import mpyc_internals as internals
    from .clearing import MarketNode
    from .flex import DeliveryPlan, flex_rows, settle_delivery
    from .jobs import save_array, write_json
    await start_links()
    report('connected')
    job = JobDir(job_dir)
    spec, own = job.load_spec(), job.node(index)
    plan = DeliveryPlan.load(job)
    flex = ff.to_ints(np.load(own.flex_shares)) if os.path.exists(own.flex_shares) else \
        np.zeros((0, 0, 0), dtype=object)
    node = MarketNode(spec, np.load(own.shares, mmap_mode='r'), spec.participants)
    await node.agree_seed()
    rows, inside = flex_rows(spec, plan, flex)
    out = await settle_delivery(node, np.load(own.readings, mmap_mode='r'), rows, inside, plan)
    internals.shutting_down()
    await mpc.shutdown()
    save_array(own.delivery, out.delivery)
    save_array(own.settlement, out.settlement)
    save_array(own.retailer, out.retailer)
    write_json(own.delivery_public, {'meter_excluded': out.meter_excluded})


def settle_flex_mpc(market: FlexMarket, orders: Sequence[Order], readings: Mapping[tuple[str, int], int],
                    deviation_price2: Mapping[int, int], nodes: int = 3, chunk: int = ORDERS_PER_CHUNK,
                    in_process: bool = False, timeout: float | None = None) -> tuple[FlexResult, FlexSettlement]:
    """Clear the flexibility market and settle its delivery under MPC, in two sessions: the
    clearing (its result shares kept by the nodes), then the delivery session over the energy
    orders' shares, the meter packages and those kept shares (mpc.flex.settle_delivery); every
    owner reconstructs its own rows. Equal to market.flex's clear_flex_plain + settle_flex_plain.

    Args:
        market: the requests, offers, feeders and pricing.
        orders: the energy orders (the planned positions).
        readings: {(participant, slot): metered net Wh}.
        deviation_price2: 2 x each slot's deviation price in units (the energy clearing's).
        nodes: market node processes, 3..MAX_NODES (ignored in process).
        chunk: offers streamed at once.
        in_process: one MPC party in this process (tests) instead of node processes.
        timeout: seconds before a stuck session is stopped.

    Returns:
        (the FlexResult, the FlexSettlement).

    Raises:
        BadParameter: nodes outside 3..MAX_NODES.
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    from .flex import DeliveryPlan
    if not in_process and not 3 <= nodes <= MAX_NODES:
        raise BadParameter('nodes', f'nodes must be in 3..{MAX_NODES}')
    parties = 1 if in_process else nodes
    root = tempfile.mkdtemp(prefix='mpc-market-flex-delivery-')
    try:
        flex_dir, job_dir = os.path.join(root, 'clearing'), os.path.join(root, 'delivery')
        os.makedirs(flex_dir)
        book = FlexBook(market)
        if book.participants:
            spec = book.spec(parties, chunk)
            ran = run_in_process(book, spec, keep=flex_dir) if in_process else \
                run_on_nodes(book, spec, timeout, keep=flex_dir)
            result = flex_result(book, *ran)
        else:
            result = _empty(market, 'mpc-in-process' if in_process else 'mpc')
        energy = delivery_book(market, orders, readings)
        spec = replace(job_spec(energy, parties, chunk), settle=True, max_reading_wh=market.config.max_reading_wh)
        config = market.config
        plan = DeliveryPlan(list(book.participants), list(book.slots),
                            [deviation_price2.get(s, config.floor_units + config.ceiling_units) for s in energy.slots])
        os.makedirs(job_dir)
        spec.save(job_dir)
        job = JobDir(job_dir)
        plan.save(job)
        share_book(energy, spec, job_dir)
        share_book(energy, spec, job_dir, encode=lambda rows: delivery_packages(energy, readings, rows),
                   readings=True)
        for i in range(parties):
            if book.participants:  # the nodes keep the clearing's result shares for this session
                shutil.copy(JobDir(flex_dir).node(i).results, job.node(i).flex_shares)
        mark_ready(job_dir, parties)
        if in_process:
            from .inprocess import single_party_runtime
            mpc = single_party_runtime()
            mpc.run(delivery_party(job_dir, 0, mpc.start, report=lambda line: None))
        else:
            wait_nodes(start_delivery_parties(job_dir, parties), job_dir, timeout)
        return result, delivery_settlement(market, result, orders, readings, energy, job_dir, spec)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_delivery_parties(job_dir: str, nodes: int, host: str = '127.0.0.1') -> list[PartyProcess]:
    """Start the delivery session's party processes (python -m mpc_market.mpc.flex_local).

    Args:
        job_dir: the session's job directory (packages written, ready marked).
        nodes: how many parties.
        host: the address they listen on.

    Returns:
        One PartyProcess per party.
    """
    ports = free_ports(nodes)
    parties = ','.join(f'{host}:{p}' for p in ports)
    tls = ephemeral_node_keys(job_dir, nodes, host)
    job = JobDir(job_dir)
    return [PartyProcess([sys.executable, '-m', 'mpc_market.mpc.flex_local', '--job', job_dir, '--index', str(i),
                          '--parties', parties, '--keys', tls], job.node(i).make().log) for i in range(nodes)]


def delivery_settlement(market: FlexMarket, result: FlexResult, orders: Sequence[Order],
                        readings: Mapping[tuple[str, int], int], energy: Book, job_dir: str,
                        spec: JobSpec) -> FlexSettlement:
    """Every owner's rows of a finished delivery session: its shares recombined, its plaintext
    figures (planned, adjusted, metered: its own order, activation and reading) beside them.

    Args:
        market: the market.
        result: the clearing.
        orders: the energy orders.
        readings: the meter readings.
        energy: the session's Book.
        job_dir: the finished session.
        spec: its JobSpec.

    Returns:
        The FlexSettlement, rows in the reference's order.

    Raises:
        EngineError: the nodes' shares are inconsistent.
    """
    from ..market.flex import Delivery, Imbalance, adjusted_position
    job = JobDir(job_dir)
    per_node = [ff.to_ints(np.load(job.node(i).delivery))
                for i in range(spec.nodes)]
    values, consistent = ff.recombine(per_node, spec.threshold)
    if not consistent.all():
        raise EngineError('delivery shares from the nodes are inconsistent')
    delivered, deviations, retailer = ff.signed(values), reconstruct(job_dir, spec, 'settlement'), \
        reconstruct(job_dir, spec, 'retailer')
    pi, si = energy.participant_index, energy.slot_index
    order_of = {(o.participant, o.slot): o for o in orders}
    with open(job.node(0).delivery_public) as f:  # packages the nodes excluded count as no reading
        excluded = set(json.load(f)['meter_excluded'])
    readings = {key: net for key, net in readings.items() if key[0] not in excluded}
    deliveries, shift = [], {}
    for a in (a for a in result.activations if a.activated_wh):
        key = (a.participant, a.slot)
        planned = settlement.planned_position(order_of.get(key))
        shift[key] = adjusted_position(a.direction, planned, a.activated_wh) - planned
        done, payment, penalty, moved = (int(v) for v in delivered[pi[a.participant], si[a.slot]])
        if moved != shift[key]:
            raise EngineError(f'the adjusted position of {a.participant} in slot {a.slot} differs from its activation')
        deliveries.append(Delivery(a.participant, a.slot, a.direction, a.request, a.activated_wh, planned,
                                   planned + shift[key], readings.get(key), done, a.activated_wh - done,
                                   payment, penalty))
    members = sorted(set(order_of) | set(readings) | set(shift), key=lambda k: (k[1], k[0]))
    imbalances = []
    for p, s in members:
        planned = settlement.planned_position(order_of.get((p, s)))
        net = readings.get((p, s), settlement.missing_reading_net(order_of.get((p, s))))
        deviation, amount = (int(v) for v in deviations[pi[p], si[s]])
        imbalances.append(Imbalance(p, s, planned, planned + shift.get((p, s), 0), net, deviation, amount))
    slots = {s: settlement.SlotSettlement(*(int(v) for v in retailer[si[s]]))
             for s in sorted({s for _, s in members})}
    return FlexSettlement(deliveries, imbalances, slots)


def main(argv: Sequence[str] | None = None) -> None:
    """A party of a delivery session, started as ``python -m mpc_market.mpc.flex_local`` with the
    node's options (--job, --index, --parties, --keys); exits as a node does (node.run_or_exit).

    Args:
        argv: the arguments; None: sys.argv[1:].
    """
    from .node import mpyc_argv, parse_args, run_or_exit
    args = parse_args(argv)
    sys.argv = mpyc_argv(args)  # before mpyc.runtime is imported
    from mpyc.runtime import mpc

    from . import mpyc_internals as internals
    run_or_exit(mpc, lambda: delivery_party(args.job, args.index, lambda: internals.start(mpc, args.keys),
                                            report=lambda line: print(line, flush=True)))


if __name__ == '__main__':
    main()
