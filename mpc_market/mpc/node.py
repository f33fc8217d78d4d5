"""A market node process: one MPyC party clearing the job in a job directory.

    python -m mpc_market.mpc.node --job DIR --index I --parties HOST:PORT,HOST:PORT,...

The node reads only job.json and its own node{I}/ files, and writes node{I}/results.npy
(its result shares) and node{I}/public.json (the opened public outputs).

With --deployment (a market node daemon's clearing run) held.json maps each participant this
node holds to the SHA-256 of its signed envelope, and job.json lists no participants: the nodes
first agree on the participants whose identical envelope all of them hold. With --ssl, MPyC
reads its TLS material from .config/ in the working directory. A lost peer ends the run at
once (MPyC itself would wait forever).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature

from ..common.errors import BadParameter, EngineError, Malformed, Tampered

if TYPE_CHECKING:  # numpy, MPyC and the node's modules load in the party, after sys.argv is set
    import numpy as np
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from .clearing import MarketNode
    from .flex import DeliveryPlan
    from .jobs import ClearingVerdicts, JobDir, JobSpec, NodeFiles, Progress

# PublicOutputs' fields but the figures: participant lists, and the mechanism's opened slot values
PublicFields = dict[str, list[str] | list[dict[str, Any]]]

STATISTICAL_SECURITY = 40
AGREEMENT_DOMAIN = b'mpc-market/held-envelopes/v1\n'
READINGS_AGREEMENT_DOMAIN = b'mpc-market/held-readings/v1\n'


class StatesDiffer(EngineError):
    """The nodes' stored states differ (e.g. a round cleared at some of them only): not deterministic,
    the run is retried like a lost link."""


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the node daemon dies, so no orphan keeps the MPyC port.

    Set here rather than in a preexec_fn: forking the multi-threaded gRPC daemon is unsafe."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get('MPC_MARKET_PARENT_PID', str(os.getppid())):
        raise SystemExit('error: the node daemon exited before the MPC party started')


def held_statement(round_id: str, node_index: int, held: Mapping[str, str], domain: bytes = AGREEMENT_DOMAIN) -> bytes:
    """The canonical bytes a node signs to tell the others which envelopes it holds.

    Args:
        round_id: the deployment round.
        node_index: the signing node.
        held: {participant: SHA-256 hex of its envelope} the node holds.
        domain: what the statement is about (AGREEMENT_DOMAIN or READINGS_AGREEMENT_DOMAIN).

    Returns:
        domain followed by the canonical JSON of round, node and the sorted held pairs.
    """
    from ..common.signing import canonical_bytes
    return canonical_bytes(domain, {'round_id': round_id, 'node_index': node_index,
                                              'held': sorted([p, h] for p, h in held.items())})


def parse_held_statement(message: object, sender: int, round_id: str, verify_key: Ed25519PublicKey,
                         domain: bytes = AGREEMENT_DOMAIN) -> dict[str, str]:
    """The envelopes a peer says it holds, from its signed statement.

    Args:
        message: what node sender transferred: (body, signature) by the protocol, anything if it lies.
        sender: the peer's node index.
        round_id: this round.
        verify_key: node sender's Ed25519 key.
        domain: the statement's domain (as for held_statement).

    Returns:
        {participant: envelope SHA-256 hex}.

    Raises:
        Tampered: the signature is not node sender's over the body.
        Malformed: not a (body, signature) pair, not of this domain, round or sender, or not exactly
            held_statement's canonical schema.
    """
    from ..common.names import is_name
    from ..common.signing import SHA256_HEX
    if not (isinstance(message, tuple) and len(message) == 2 and all(isinstance(x, bytes) for x in message)):
        raise Malformed(f'node {sender}: malformed envelope statement')
    body, signature = message
    try:
        verify_key.verify(signature, body)
    except InvalidSignature:
        raise Tampered(f'node {sender}: envelope statement with a bad signature') from None
    if not body.startswith(domain):
        raise Malformed(f'node {sender}: not an envelope statement')
    try:
        fields = json.loads(body[len(domain):])
    except (ValueError, RecursionError):
        raise Malformed(f'node {sender}: malformed envelope statement') from None
    if not isinstance(fields, dict) or fields.get('round_id') != round_id or fields.get('node_index') != sender:
        raise Malformed(f'node {sender}: envelope statement for another round or node')
    rows = fields.get('held')
    if not isinstance(rows, list) or not all(
            isinstance(r, list) and len(r) == 2 and is_name(r[0]) and isinstance(r[1], str)
            and SHA256_HEX.fullmatch(r[1]) for r in rows):
        raise Malformed(f'node {sender}: malformed envelope statement')
    held = {participant: digest for participant, digest in rows}
    if len(held) != len(rows) or body != held_statement(round_id, sender, held, domain):
        raise Malformed(f'node {sender}: envelope statement is not canonical')
    return held


async def agree_on_envelopes(spec: JobSpec, shares: np.ndarray, held: Mapping[str, str], keys_dir: str, index: int,
                             domain: bytes = AGREEMENT_DOMAIN) -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    """Keep the participants whose identical signed envelope every node holds.

    Each node signs the list of {participant: envelope SHA-256} it holds with its Ed25519 key;
    every statement received is checked against its sender's key and the schema.

    Args:
        spec: the job (nodes, round_id).
        shares: this node's packages, rows in sorted(held) order, (4, held, slots, width).
        held: {participant: envelope SHA-256 hex} of the packages this node holds.
        keys_dir: this node's keys (its signing key, every node's verify key).
        index: this node.
        domain: what is agreed on (AGREEMENT_DOMAIN: orders; READINGS_AGREEMENT_DOMAIN: readings).

    Returns:
        (kept shares, kept participants, missing participants, kept rows of shares).

    Raises:
        Tampered, Malformed: a peer's statement (parse_held_statement).
        KeyFileError: a node key cannot be loaded.
    """
    import numpy as np
    from mpyc.runtime import mpc

    from ..common.keys import load_node_signing_key, load_node_verify_keys
    verify_keys = load_node_verify_keys(keys_dir, spec.nodes)
    body = held_statement(spec.round_id, index, held, domain)
    messages = await mpc.transfer((body, load_node_signing_key(keys_dir, index).sign(body)))
    views = [held if sender == index else parse_held_statement(message, sender, spec.round_id,
                                                                 verify_keys[sender], domain)
             for sender, message in enumerate(messages)]
    common = set(views[0].items()).intersection(*(set(v.items()) for v in views[1:]))
    everyone = set().union(*views)
    kept = sorted(p for p, _ in common)
    row_of = {p: i for i, p in enumerate(sorted(held))}
    rows = np.array([row_of[p] for p in kept], dtype=np.int64)
    return np.ascontiguousarray(shares[:, rows]), kept, sorted(everyone - set(kept)), rows


async def settlement_packages(args: argparse.Namespace, spec: JobSpec, own: NodeFiles, clearing: ClearingVerdicts,
                              also: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray, JobSpec, list[str]]:
    """The packages of a settle-only session.

    The order shares are the clearing's (rows = clearing.participants, or the job's own in a
    local run); in a deployment the nodes first agree on the reading envelopes all of them hold.
    A participant with agreed readings but no part in the clearing has zero order shares (planned
    0); one in the clearing without agreed readings gets zero reading shares (the missing-reading
    rule applies). Participants in ``also`` (a delivery session's activated ones) are settled too:
    without orders in the clearing they are planned 0, without agreed readings missing.

    Args:
        args: parse_args's namespace (deployment, keys, index).
        spec: the job.
        own: this party's files.
        clearing: the clearing's verdicts.
        also: more participants to settle (a deployment's).

    Returns:
        (orders, readings, the spec with the settled participants, missing readings).

    Raises:
        Tampered, Malformed: a peer's reading-envelope statement, or a deployment's job files
            without the envelope hashes or the clearing's participants.
    """
    import numpy as np
    orders = np.load(own.shares, mmap_mode='r')
    readings = np.load(own.readings, mmap_mode='r')
    if not args.deployment:
        return orders, readings, spec, []
    held = deployment_held(own)
    readings, readers, _, _ = await agree_on_envelopes(spec, readings, held, args.keys, args.index,
                                                      READINGS_AGREEMENT_DOMAIN)
    if clearing.participants is None:
        raise Malformed("a deployment's clearing verdicts name no participants of the clearing")
    in_clearing = list(clearing.participants)
    participants = sorted(set(in_clearing) | set(readers) | set(also))
    order_row, reading_row = {p: i for i, p in enumerate(in_clearing)}, {p: i for i, p in enumerate(readers)}
    all_orders = np.zeros((orders.shape[0], len(participants), *orders.shape[2:]), dtype=np.uint32)
    all_readings = np.zeros((readings.shape[0], len(participants), *readings.shape[2:]), dtype=np.uint32)
    for j, p in enumerate(participants):
        if p in order_row:
            all_orders[:, j] = orders[:, order_row[p]]
        if p in reading_row:
            all_readings[:, j] = readings[:, reading_row[p]]
    return (all_orders, all_readings, replace(spec, participants=participants),
            sorted((set(in_clearing) | set(also)) - set(readers)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The node's options.

    Args:
        argv: the arguments; None: sys.argv[1:].

    Returns:
        The namespace (job, index, parties, threshold, peers, deployment, settle_only, keys).
    """
    parser = argparse.ArgumentParser(prog='mpc_market.mpc.node')
    parser.add_argument('--job', required=True)
    parser.add_argument('--index', type=int, required=True)
    parser.add_argument('--parties', required=True, help='comma-separated host:port of all nodes')
    parser.add_argument('--threshold', type=int)
    parser.add_argument('--peers', action='store_true',
                        help='scenario S1: this node is also participant committee[INDEX] and shares its own orders')
    parser.add_argument('--deployment', action='store_true',
                        help='packages of a deployment round: agree on identical envelopes first')
    parser.add_argument('--settle-only', action='store_true',
                        help='a second session: settle the readings against the order shares kept from clearing, '
                             'with the clearing\'s public verdicts and deviation prices (clearing.json)')
    parser.add_argument('--keys', required=True,
                        help='ca/ca.pem and nodes/node{i}.* of this node: every MPyC link is mutual TLS')
    return parser.parse_args(argv)


def mpyc_argv(args: argparse.Namespace) -> list[str]:
    """The MPyC runtime's own command line (it configures itself from sys.argv at import).

    Args:
        args: parse_args's namespace.

    Returns:
        sys.argv for mpyc.runtime: this party, the parties, the threshold, 2^-40 statistical
        security, PRSS only up to PRSS_UP_TO parties.
    """
    # statistical security 2^-40 for every masked opening and MPyC comparison (default 2^-30)
    argv = [sys.argv[0], '-I', str(args.index), '--no-log', '-K', str(STATISTICAL_SECURITY)]
    for address in args.parties.split(','):
        argv += ['-P', address]
    if args.threshold is not None:
        argv += ['-T', str(args.threshold)]
    if len(args.parties.split(',')) > PRSS_UP_TO:
        argv.append('--no-prss')
    return argv


# PRSS makes random shares without communication, but each costs C(m, t) PRF calls per party: 35
# at m = 7, 126 at 9, 462 at 11. Measured on 2 cores (2,000 orders): 28.9 s with PRSS against
# 21.2 s without at m = 7 (5: 10.9 against 10.0 s; 200 orders at 11: 119 s against 17.7 s), for
# 2.5-3x the bytes and ~50 more sequential messages per link. So PRSS up to 5 nodes only.
PRSS_UP_TO = 5


def deployment_held(own: NodeFiles) -> dict[str, str]:
    """A deployment's held.json: {participant: envelope SHA-256 hex}.

    Args:
        own: this party's files.

    Returns:
        The mapping the node daemon wrote.

    Raises:
        Malformed: held.json holds a local run's list of participants instead.
    """
    held = own.read_held()
    if not isinstance(held, dict):
        raise Malformed('a deployment job lists no envelope hashes of the packages held')
    return held


async def load_packages(args: argparse.Namespace, spec: JobSpec,
                        own: NodeFiles) -> tuple[np.ndarray, list[str], list[str], np.ndarray | None]:
    """The packages in this node's mode: local packages as written, the peers' own orders
    exchanged (S1), or a deployment's stored packages cut down to the envelopes every node holds.

    Args:
        args: parse_args's namespace (peers, deployment, keys, index).
        spec: the job.
        own: this party's files.

    Returns:
        (shares, held participants, missing participants, kept rows; None: every row).

    Raises:
        Tampered, Malformed: a peer's envelope statement (agree_on_envelopes).
    """
    import numpy as np
    if args.peers:
        from .peers import exchange_packages
        shares, held = await exchange_packages(spec, np.load(own.shares),
                                               np.load(own.own_orders))
        return shares, held, [], None
    shares = np.load(own.shares, mmap_mode='r')
    if args.deployment:
        return await agree_on_envelopes(spec, shares, deployment_held(own), args.keys, args.index)
    return shares, list(own.read_held()), [], None


async def settle(node: MarketNode, own: NodeFiles, readings: np.ndarray, valid: np.ndarray,
                 price2: Sequence[int]) -> list[str]:
    """The settlement phase: deviations of the meter readings of the participants valid at
    clearing, at the clearing's deviation prices; writes the settlement and retailer shares.

    Args:
        node: this party's MarketNode (seed agreed).
        own: this party's files.
        readings: the meter packages, rows as the node's participants.
        valid: per participant whether its orders were valid at clearing.
        price2: 2 x the deviation price per slot.

    Returns:
        The participants whose meter packages failed the checks.
    """
    from ..market.book import ReadingLayout
    from .jobs import save_array
    from .settlement import SettlementNode
    spec = node.spec
    started = time.perf_counter()
    layout = ReadingLayout((spec.max_reading_wh + spec.max_order_wh).bit_length(),
                           spec.max_reading_wh.bit_length(), spec.max_reading_wh)
    settled, retailer, meter_excluded = await SettlementNode(node, readings, layout, price2).run(valid)
    save_array(own.settlement, settled)
    save_array(own.retailer, retailer)
    node.timings['settlement'] = time.perf_counter() - started
    return meter_excluded


async def settle_only(args: argparse.Namespace, spec: JobSpec, own: NodeFiles,
                      progress: Progress) -> tuple[MarketNode, PublicFields]:
    """The settlement as its own MPC session: the order shares are the ones the clearing used, the
    verdicts and deviation prices the clearing's public outputs; only the seed is new.

    Args:
        args: parse_args's namespace (job, deployment, keys, index).
        spec: the job.
        own: this party's files.
        progress: told (phase, done, total).

    Returns:
        (the node, PublicOutputs' fields but the figures).

    Raises:
        BadParameter: the clearing's verdicts give another number of deviation prices than slots.
        Tampered, Malformed: a peer's reading-envelope statement, or a deployment's job files
            without the envelope hashes or the clearing's participants.
        StatesDiffer: the nodes hold different delivery plans (retried).
    """
    import numpy as np

    from .clearing import MarketNode
    from .jobs import JobDir
    job = JobDir(args.job)
    clearing = job.read_verdicts()
    cleared, price2 = set(clearing.cleared), [int(v) for v in clearing.deviation_price2]
    if len(price2) != len(spec.slots):
        raise BadParameter('deviation_price2',
                           f'clearing verdicts: {len(price2)} deviation prices for {len(spec.slots)} slots')
    delivery = flex_delivery_plan(job, spec, price2) if args.deployment else None
    if args.deployment:
        await agree_on_delivery(delivery)
    orders, readings, spec, no_reading = await settlement_packages(
        args, spec, own, clearing, delivery.flex_participants if delivery else ())
    participants = spec.participants
    in_clearing = set(participants if clearing.participants is None else clearing.participants)
    node = MarketNode(spec, orders, participants, progress)
    await node.agree_seed()
    # in the market: cleared at clearing, or readings only (no order: planned 0)
    valid = np.array([p in cleared or p not in in_clearing for p in participants], dtype=bool)
    unread = set(no_reading)  # zero packages fail the checks too: report them as missing, not invalid
    if delivery is None:
        excluded = await settle(node, own, readings, valid, price2)
    else:
        excluded = await settle_flex_delivery(node, own, readings, valid, delivery)
    invalid = [p for p in excluded if p not in unread]
    return node, {'slots': [], 'excluded': [], 'missing': [], 'meter_excluded': invalid,
                  'participants': participants, 'missing_readings': no_reading,
                  'order_excluded': sorted(in_clearing - cleared)}  # PublicOutputs' fields but the figures


def flex_delivery_plan(job: JobDir, spec: JobSpec, price2: Sequence[int]) -> DeliveryPlan | None:
    """A deployment's delivery plan, if the settled round has a cleared flexibility round.

    Args:
        job: the settlement's job directory.
        spec: its job.
        price2: the clearing's 2 x deviation prices.

    Returns:
        The plan, or None (an energy settlement).

    Raises:
        BadParameter: the plan does not fit the job (slots outside it, other prices).
    """
    from .flex import DeliveryPlan
    if not DeliveryPlan.present(job):
        return None
    plan = DeliveryPlan.load(job)
    if not set(plan.flex_slots) <= set(spec.slots) or plan.price2 != list(price2):
        raise BadParameter('delivery', 'the delivery plan does not fit the settlement job')
    return plan


async def agree_on_delivery(plan: DeliveryPlan | None) -> None:
    """Every node settles the same flexibility delivery, or none: a flexibility round cleared at
    some nodes only (a crash between their stores) would otherwise run two protocols at once.

    Args:
        plan: this node's delivery plan, or None.

    Raises:
        StatesDiffer: the nodes' plans differ (the settlement is retried: their stores converge
            once the broker has re-run the flexibility round everywhere).
    """
    import hashlib

    from mpyc.runtime import mpc
    mine = hashlib.sha256(json.dumps(None if plan is None else plan.to_json(), sort_keys=True).encode()).hexdigest()
    views = await mpc.transfer(mine)
    if any(view != mine for view in views):
        raise StatesDiffer('the nodes do not settle the same flexibility delivery (a flexibility round cleared at '
                           'some nodes only)')


async def settle_flex_delivery(node: MarketNode, own: NodeFiles, readings: np.ndarray, valid: np.ndarray,
                               plan: DeliveryPlan) -> list[str]:
    """The settlement of a round with activated flexibility (mpc.flex.settle_delivery): the
    deviations against the adjusted positions, and every activation's delivery, payment and
    penalty; writes the settlement, retailer and delivery shares.

    Args:
        node: this party's MarketNode (seed agreed).
        own: this party's files (flex_shares: the flexibility clearing's result shares).
        readings: the meter packages, rows as the node's participants.
        valid: per participant whether its orders were valid at clearing.
        plan: the delivery plan.

    Returns:
        The participants whose meter packages failed the checks.

    Raises:
        BadParameter: the kept flexibility shares do not have the plan's shape.
    """
    import numpy as np

    from . import field as ff
    from .flex import FIELDS, flex_rows, settle_delivery
    from .jobs import save_array
    started = time.perf_counter()
    flex = ff.to_ints(np.load(own.flex_shares))
    if flex.shape != (len(plan.flex_participants), len(plan.flex_slots), len(FIELDS)):
        raise BadParameter('flex_shares', f'flexibility shares of shape {flex.shape} for the delivery plan')
    rows, inside = flex_rows(node.spec, plan, flex)
    out = await settle_delivery(node, readings, rows, inside, plan, valid)
    save_array(own.settlement, out.settlement)
    save_array(own.retailer, out.retailer)
    save_array(own.delivery, out.delivery)
    node.timings['settlement'] = time.perf_counter() - started
    return out.meter_excluded


def say(line: str) -> None:
    """Print a status line for the supervising process (it reads the party's log).

    Args:
        line: 'connected', 'progress PHASE DONE TOTAL', ...
    """
    print(line, flush=True)


async def run_party(mpc: Any, args: argparse.Namespace, spec: JobSpec, own: NodeFiles,
                    start_links: Callable[[], Awaitable[None]], report: Callable[[str], None] = say) -> None:
    """One party's whole run on its job files: start the links, wait for the packages, clear (and
    settle) or settle only, then write the result shares and the public outputs.

    Args:
        mpc: the MPyC runtime of this process (mpyc.runtime.mpc: MPyC has no types, so Any).
        args: parse_args's namespace.
        spec: the job.
        own: this party's files.
        start_links: awaited first: connects this party to the others.
        report: where the status lines go ('connected', progress).

    Raises:
        Tampered, Malformed: a peer's statement (seed commitment, envelope agreement).
        BadParameter: the job names no registered mechanism, the market is too large, or the
            clearing's verdicts do not fit the job.
        EngineError: the peers' result shares (S1) are inconsistent.
    """
    import numpy as np

    from . import mpyc_internals as internals
    from .clearing import MarketNode
    from .jobs import PublicOutputs, RunFigures, save_array
    from .primitives import peak_rss_mb

    started = time.perf_counter()
    await start_links()
    report('connected')  # the daemon's watchdog: start-up is over
    while not own.is_ready():  # packages still being written
        await asyncio.sleep(0.02)

    def progress(phase: str, done: int, total: int) -> None:  # node 0 reports; the local engine relays it
        if mpc.pid == 0:
            report(f'progress {phase} {done} {total}')

    if args.settle_only:
        node, public = await settle_only(args, spec, own, progress)
        results = None
    else:
        shares, held, missing, rows = await load_packages(args, spec, own)
        # a deployment's job lists no participants: those whose envelope every node holds
        run_spec = replace(spec, participants=list(held)) if args.deployment else spec
        node = MarketNode(run_spec, shares, held, progress)
        outcome = await node.run()
        results = outcome.clearing.results
        public = {'slots': outcome.clearing.slots, 'excluded': outcome.excluded,
                  'missing': missing if args.deployment else outcome.missing,
                  'participants': list(run_spec.participants)}
        if outcome.feeders:
            public['feeders'] = [f.to_json() for f in outcome.feeders]
        if spec.settle:
            readings = np.load(own.readings, mmap_mode='r')
            public['meter_excluded'] = await settle(node, own, readings if rows is None else readings[:, rows],
                                                    outcome.valid, outcome.clearing.deviation_price2)
        if args.peers:  # S1 clears in one session: each committee peer takes back its own rows
            from .peers import own_results, return_results
            save_array(own.own_results, own_results(spec, await return_results(spec, results)))
    links = [peer.protocol for peer in mpc.parties if peer.pid != mpc.pid]
    sent = sum(link.nbytes_sent for link in links)
    messages = max((getattr(link, 'messages_sent', 0) for link in links), default=0)
    internals.shutting_down()
    await mpc.shutdown()
    if results is not None:
        save_array(own.results, results)
    timings = {k: round(v, 4) for k, v in node.timings.items()}
    timings['node_total'] = round(time.perf_counter() - started, 4)
    figures = RunFigures(timings=timings, mpc_tls=bool(mpc.options.ssl), bytes_sent=sent,
                         messages_per_link=messages, peak_rss_mb=round(peak_rss_mb(), 1),
                         peak_rss_mb_by_phase=node.peaks)
    own.write_public(PublicOutputs(figures=figures, **public))


def main(argv: Sequence[str] | None = None) -> None:
    """Run one market node party: parse the options, set up MPyC, run the job, exit.

    Args:
        argv: the arguments; None: sys.argv[1:].

    Raises:
        SystemExit: 1 after a lost link or StatesDiffer, DETERMINISTIC_EXIT after a refused job or a bug.
    """
    args = parse_args(argv)
    if args.deployment:
        _die_with_parent()
    sys.argv = mpyc_argv(args)  # before mpyc.runtime is imported

    from mpyc.runtime import mpc

    from . import mpyc_internals as internals
    from .jobs import JobDir

    job = JobDir(args.job)
    spec = job.load_spec()
    own = job.node(args.index)

    def run() -> Awaitable[None]:
        return run_party(mpc, args, spec, own, lambda: internals.start(mpc, args.keys))

    profile_dir = os.environ.get('MPC_MARKET_PROFILE')  # developer aid: cProfile each node
    if profile_dir:
        import cProfile
        cProfile.runctx('mpc.run(run())', globals(), locals(), os.path.join(profile_dir, f'node{args.index}.prof'))
    else:
        run_or_exit(mpc, run)


def run_or_exit(mpc: Any, run: Callable[[], Awaitable[None]]) -> None:
    """Run a party's coroutine to the end, or exit with the status the supervisor reads.

    Args:
        mpc: the MPyC runtime.
        run: makes the party's coroutine.

    Raises:
        SystemExit: 1 after a lost link or StatesDiffer, DETERMINISTIC_EXIT after a refused job or a bug.
    """
    from .jobs import DETERMINISTIC_EXIT
    try:
        mpc.run(run())
    except (OSError, EOFError) as exc:  # a lost link (a peer died, the network): the broker reruns
        print(f'error: link lost: {type(exc).__name__}: {exc}', flush=True)
        sys.exit(1)
    except StatesDiffer as exc:  # the nodes' stores have not converged yet: the broker reruns
        print(f'error: {exc}', flush=True)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - a refused job or a bug: the same inputs fail the same way
        import traceback
        traceback.print_exc()
        print(f'error: {type(exc).__name__}: {str(exc)[:200]}', flush=True)
        sys.exit(DETERMINISTIC_EXIT)


if __name__ == '__main__':
    main()
