"""Local MPC runs: play every participant, supervise the node processes, reconstruct the results.

``clear_mpc`` shares each participant's orders client-side (Shamir, one package per node),
starts the market nodes as separate OS processes talking MPyC over TLS on 127.0.0.1, and
finally plays every owner again, reconstructing each participant's rows from the nodes'
result shares.
"""

import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..common.errors import BadParameter, EngineError
from ..market import settlement
from ..market.book import Book
from ..market.orders import Order
from ..market.results import ClearingResult, SettlementResult, assemble, order_rows, public_slot_rows
from . import field as ff
from .jobs import ORDERS_PER_CHUNK, ClearingVerdicts, JobDir, JobSpec, Progress, PublicOutputs, job_spec
from .supervisor import PartyProcess, relay_progress, supervise

MAX_NODES = 11

Encoder = Callable[[Sequence[int]], np.ndarray]  # participant indices -> (n, slots, width) values
NetOf = dict[tuple[str, int], int]               # meter readings {(participant, slot): net Wh}
Times = tuple[float, float, float]               # perf_counter at start, once shared, once computed


def free_ports(count: int) -> list[int]:
    """TCP ports free on 127.0.0.1 right now.

    Args:
        count: how many.

    Returns:
        count distinct port numbers (bound together, then released: free unless another process
        takes one meanwhile).
    """
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports



def share_book(book: Book, spec: JobSpec, job_dir: str, progress: Progress | None = None,
               encode: Encoder | None = None, readings: bool = False) -> None:
    """Play every participant: encode its vectors, Shamir-share them, give node i its package.

    With several chunks, a forked worker shares every other chunk on the second core (the nodes
    are idle until the packages are ready).

    Args:
        book: the participants and their orders.
        spec: the job (nodes, threshold, chunk).
        job_dir: the job directory; each node's package goes to its NodeFiles.
        progress: told ('sharing', done, total) as chunks are shared.
        encode: participant indices -> (n, slots, width) values; the order vectors by default.
        readings: the packages are meter readings (NodeFiles.readings), not orders (NodeFiles.shares).

    Raises:
        EngineError: the forked sharing worker failed.
    """
    encode = encode or book.encode
    n_p, n_s = len(book.participants), len(book.slots)
    width = encode(range(0, min(1, n_p))).shape[-1]
    files = [JobDir(job_dir).node(i).make() for i in range(spec.nodes)]
    paths = [f.readings if readings else f.shares for f in files]
    for path in paths:
        np.lib.format.open_memmap(path, mode='w+', dtype=np.uint32, shape=(ff.LIMBS, n_p, n_s, width)).flush()
    step = max(256, min(spec.chunk, -(-n_p // 8)))  # small enough to split evenly between two workers
    chunks = [(start, min(start + step, n_p)) for start in range(0, n_p, step)]

    def share_chunks(mine: list[tuple[int, int]], report: Progress | None) -> None:
        outputs = [np.load(path, mmap_mode='r+') for path in paths]
        for start, stop in mine:
            shares = ff.share_values(encode(range(start, stop)), spec.threshold, spec.nodes)
            for i, out in enumerate(outputs):
                out[:, start:stop] = shares[i]
            if report:
                report('sharing', stop, n_p)
        for out in outputs:
            out.flush()

    worker = None
    if len(chunks) > 1 and (os.cpu_count() or 1) > 1:
        import multiprocessing
        worker = multiprocessing.get_context('fork').Process(target=share_chunks, args=(chunks[1::2], None))
        worker.start()
        share_chunks(chunks[0::2], progress)
        worker.join()
        if worker.exitcode != 0:
            raise EngineError(f'client-side sharing worker failed with status {worker.exitcode}')
    else:
        share_chunks(chunks, progress)
    if progress:
        progress('sharing', n_p, n_p)
    for f in files:
        f.write_held(book.participants)



def ephemeral_node_keys(job_dir: str, nodes: int, host: str) -> str:
    """A per-run CA and node certificates in the private job directory, so the local node
    processes accept MPyC links only from each other; the CA key is deleted once they are issued.

    Args:
        job_dir: the job directory (its JobDir.tls receives the files).
        nodes: how many node certificates.
        host: the address each certificate names.

    Returns:
        The keys directory (ca/ca.pem and nodes/node{i}.*) the nodes take as --keys.
    """
    from ..common import keys
    tls = JobDir(job_dir).tls
    keys.create_ca(tls)
    for i in range(nodes):
        keys.create_node(tls, i, hosts=(host,))
    os.remove(os.path.join(tls, 'ca', 'ca.key'))
    return tls



def start_nodes(job_dir: str, nodes: int, host: str = '127.0.0.1',
                extra_args: Sequence[str] = ()) -> list[PartyProcess]:
    """Start the node processes; they connect, then wait for each node's ready flag.

    Args:
        job_dir: the job directory (job.json saved).
        nodes: how many parties.
        host: the address they listen on.
        extra_args: more options of mpc_market.mpc.node (``--peers``, ``--settle-only``).

    Returns:
        One PartyProcess per node, in party order.
    """
    ports = free_ports(nodes)
    parties = ','.join(f'{host}:{p}' for p in ports)
    tls = ephemeral_node_keys(job_dir, nodes, host)
    job = JobDir(job_dir)
    return [PartyProcess([sys.executable, '-m', 'mpc_market.mpc.node', '--job', job_dir, '--index', str(i),
                          '--parties', parties, '--keys', tls, *extra_args], job.node(i).make().log)
            for i in range(nodes)]


def mark_ready(job_dir: str, nodes: int) -> None:
    """Set every party's ready flag: its packages are complete.

    Args:
        job_dir: the job directory.
        nodes: how many parties.
    """
    for i in range(nodes):
        JobDir(job_dir).node(i).mark_ready()


def stop_nodes(parties: list[PartyProcess]) -> None:
    """Kill every node process (a failed start: none may wait for packages that never come).

    Args:
        parties: start_nodes's processes.
    """
    for party in parties:
        party.kill()


def wait_nodes(parties: list[PartyProcess], job_dir: str, timeout: float | None = None,
               progress: Progress | None = None) -> None:
    """Wait for all node processes, relaying node 0's progress lines.

    Args:
        parties: start_nodes's processes.
        job_dir: the job directory (node 0's log).
        timeout: seconds before the run counts as stuck; None: no limit.
        progress: told (phase, done, total) as node 0 reports it.

    Raises:
        EngineError: a node failed or the run timed out (the others killed).
    """
    log0, offset = JobDir(job_dir).node(0).log, [0]

    def relay() -> None:
        offset[0] = relay_progress(log0, offset[0], progress)
    failure = supervise(parties, timeout, tick=relay)
    if failure is None:
        return
    failed = (f'nodes timed out after {timeout} s' if failure.kind == 'timeout'
              else f'node {failure.index} exited with status {failure.returncode}')
    said = [(i, party.lines()) for i, party in enumerate(parties)]
    tail = next((f'{lines[-1]} (node {i})' for i, lines in said if lines), '')
    raise EngineError(f'{failed}; {tail}' if tail else failed)


def run_nodes(job_dir: str, nodes: int, timeout: float | None = None, host: str = '127.0.0.1',
              extra_args: Sequence[str] = (), progress: Progress | None = None) -> None:
    """Start the nodes on packages already written and wait for them.

    Args:
        job_dir, nodes, host, extra_args: as for start_nodes.
        timeout, progress: as for wait_nodes.

    Raises:
        EngineError: a node failed or the run timed out.
    """
    procs = start_nodes(job_dir, nodes, host, extra_args)
    mark_ready(job_dir, nodes)
    wait_nodes(procs, job_dir, timeout, progress)



def reconstruct(job_dir: str, spec: JobSpec, shares: str = 'results') -> np.ndarray:
    """Play every owner: recombine result shares from all nodes (checking consistency).

    Args:
        job_dir: a finished job's directory.
        spec: the job (nodes, threshold).
        shares: which of NodeFiles' share files: 'results', 'settlement' or 'retailer'.

    Returns:
        The signed values, (participants, slots, fields) (the retailer's: (slots, fields)).

    Raises:
        EngineError: the nodes' shares do not lie on one polynomial.
    """
    job = JobDir(job_dir)
    per_node = [np.load(getattr(job.node(i), shares)) for i in range(spec.nodes)]
    ints = [ff.to_ints(r) for r in per_node]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise EngineError('result shares from the nodes are inconsistent')
    return ff.signed(values)  # (participants, slots, 3)



def read_public_outputs(job_dir: str, nodes: int) -> list[PublicOutputs]:
    """Every party's public outputs.

    Args:
        job_dir: a finished job's directory.
        nodes: how many parties.

    Returns:
        One PublicOutputs per party, in party order.

    Raises:
        EngineError: the parties opened different public values.
    """
    publics = [JobDir(job_dir).node(i).read_public() for i in range(nodes)]
    if any(p.differs_from(publics[0]) for p in publics):
        raise EngineError('nodes disagree on the public results')
    return publics



def settlement_values(job_dir: str, spec: JobSpec,
                      publics: Sequence[PublicOutputs]) -> dict[str, np.ndarray | list[str]]:
    """ClearingResult.settlement of a run.

    Args:
        job_dir: a finished settling job's directory.
        spec: the job.
        publics: read_public_outputs's outputs.

    Returns:
        {'values': deviation/amount per (participant, slot), 'retailer': the retailer's values per
        slot, 'excluded': the participants whose meter packages failed}.

    Raises:
        EngineError: the nodes' shares are inconsistent.
    """
    return {'values': reconstruct(job_dir, spec, 'settlement'), 'retailer': reconstruct(job_dir, spec, 'retailer'),
            'excluded': publics[0].meter_excluded}


def clearing_spec(book: Book, nodes: int, chunk: int, allocation: str, net_of: NetOf | None) -> JobSpec:
    """The job parameters of a clearing of book by nodes parties, settling net_of's readings too if given."""
    spec = replace(job_spec(book, nodes, chunk), allocation=allocation)
    return spec if net_of is None else replace(spec, settle=True, max_reading_wh=book.config.max_reading_wh)


def share_packages(book: Book, spec: JobSpec, job_dir: str, net_of: NetOf | None,
                   progress: Progress | None = None) -> None:
    """Every participant's order packages, and its reading packages when net_of is given (share_book)."""
    share_book(book, spec, job_dir, progress)
    if net_of is not None:
        from ..market.book import encode_readings
        share_book(book, spec, job_dir, encode=lambda rows: encode_readings(book, net_of, rows), readings=True)


def job_result(book: Book, job_dir: str, spec: JobSpec, times: Times) -> ClearingResult:
    """The ClearingResult of a finished job.

    Args:
        book: the job's book.
        job_dir: the finished job's directory.
        spec: the job.
        times: (started, shared, computed) perf_counter readings.

    Returns:
        Every party's public outputs (checked equal), each owner's reconstructed rows and, with
        spec.settle, the settlement values.

    Raises:
        EngineError: the parties disagree or their shares are inconsistent.
    """
    publics = read_public_outputs(job_dir, spec.nodes)
    values = reconstruct(job_dir, spec)
    pi, si = book.participant_index, book.slot_index
    result = mpc_result(book, publics, lambda o: tuple(int(v) for v in values[pi[o.participant], si[o.slot]]), times)
    if spec.settle:
        result = replace(result, settlement=settlement_values(job_dir, spec, publics))
    return result


def mpc_result(book: Book, publics: Sequence[PublicOutputs], values_of: Callable[[Order], tuple[int, ...]],
               times: Times) -> ClearingResult:
    """The ClearingResult of public outputs and each order's values, with the run's figures.

    Args:
        book: the job's book.
        publics: every party's PublicOutputs (equal but for their figures).
        values_of: an Order -> its (matched, unmatched, amount[, local, cross]) values.
        times: (started, shared, computed) perf_counter readings.

    Returns:
        The slot rows, order rows, excluded participants and stats of the run.
    """
    started, shared, computed = times
    public = publics[0]
    excluded = set(public.excluded) | set(public.missing)
    rows = order_rows(book, excluded, values_of)
    slots = public_slot_rows(book.config, public.slots)
    finished = time.perf_counter()
    n = max(1, len(book.participants))
    stats = {
        'engine': 'mpc', 'nodes': len(publics),
        'sharing_s': shared - started, 'nodes_s': computed - shared, 'output_s': finished - computed,
        'total_s': finished - started,
        'node_timings': [p.figures.timings for p in publics],
        'bytes_sent_per_participant': max(p.figures.bytes_sent for p in publics) / n,
        'peak_rss_mb': max(p.figures.peak_rss_mb for p in publics),
        'messages_per_link': max(p.figures.messages_per_link for p in publics),
        'mpc_tls': all(p.figures.mpc_tls for p in publics),
    }
    from ..market.feeders import FeederPosition
    return ClearingResult(slots, rows, sorted(excluded), stats,
                          feeders=[FeederPosition.from_json(f) for f in public.feeders])



def clear_peers(book: Book, committee: int | None = None, round_id: str = 'local', progress: Progress | None = None,
                timeout: float | None = None, workdir: str | None = None, keep: bool = False,
                keys_dir: str | None = None) -> ClearingResult:
    """Scenario S1: the peers draw a committee of market nodes by lottery (every peer up to 7);
    each committee peer shares its own orders from its node, every other peer as a client.

    Args:
        book: the peers' orders.
        committee: the committee size, 3..11; None: every peer up to 7, else 5.
        round_id: the round the lottery's messages are bound to.
        progress: told (phase, done, total) while sharing and while the nodes work.
        timeout: seconds before a stuck run is stopped.
        workdir: where the temporary job directory goes.
        keep: leave the job directory (shares included) for inspection.
        keys_dir: every peer signs its lottery messages with its own key from here (``keys
            participants``; its registry must list exactly the book's participants); None: a
            fresh key per peer and run.

    Returns:
        The ClearingResult; the lottery's public transcript, with a copy of the peers' public
        keys, is in ``stats['committee']``.

    Raises:
        EngineError: the lottery failed, a node failed or timed out, or the nodes disagree.
        KeyFileError: a key in keys_dir cannot be loaded.
    """
    from .committee import draw, peer_keys, verify
    started = time.perf_counter()
    keys, registry = peer_keys(book.participants, keys_dir)
    lottery = draw(round_id, list(book.participants), committee, keys=keys)
    verify(lottery, registry)  # what each peer checks before it runs a node or submits to one
    size = len(lottery['committee'])
    members = [book.participant_index[p] for p in lottery['committee']]
    job_dir = tempfile.mkdtemp(prefix='mpc-market-peers-', dir=workdir)
    try:
        spec = replace(job_spec(book, size, ORDERS_PER_CHUNK), mode='peers', committee=members)
        spec.save(job_dir)
        for j, p in enumerate(members):  # a committee peer's orders stay on its own node, in the clear
            np.save(JobDir(job_dir).node(j).make().own_orders, book.encode([p])[0])

        on_committee = set(members)

        def client_orders(rows: Sequence[int]) -> np.ndarray:  # the committee's rows: filled in by their nodes
            values = book.encode(rows)
            values[[i for i, r in enumerate(rows) if r in on_committee]] = 0
            return values
        share_book(book, spec, job_dir, progress, encode=client_orders)
        shared = time.perf_counter()
        if progress:
            progress('nodes', 0, size)
        run_nodes(job_dir, size, timeout, extra_args=('--peers',), progress=progress)
        computed = time.perf_counter()
        publics = read_public_outputs(job_dir, size)
        values = reconstruct(job_dir, spec)  # the client peers' own rows
        for j, p in enumerate(members):      # each committee peer reconstructed its own at its node
            values[p] = np.load(JobDir(job_dir).node(j).own_results)
        pi, si = book.participant_index, book.slot_index
        result = mpc_result(book, publics, lambda o: tuple(int(v) for v in values[pi[o.participant], si[o.slot]]),
                            (started, shared, computed))
        result.stats['committee'] = lottery
        return result
    finally:
        if not keep:
            shutil.rmtree(job_dir, ignore_errors=True)



def clear_mpc(book: Book, nodes: int = 3, chunk: int = ORDERS_PER_CHUNK, workdir: str | None = None,
              keep: bool = False, progress: Progress | None = None, timeout: float | None = None,
              net_of: NetOf | None = None, job_dir: str | None = None,
              allocation: str = 'merit-order') -> ClearingResult:
    """Clear under MPC; with net_of (meter readings) also settle deviations in the same session.

    Args:
        book: the orders and market.
        nodes: market node processes, 3..MAX_NODES.
        chunk: orders streamed at once.
        workdir: where the temporary job directory goes.
        keep: leave the job directory (shares included) for inspection.
        progress: told (phase, done, total) while sharing and while the nodes work.
        timeout: seconds before a stuck run is stopped.
        net_of: meter readings {(participant, slot): net Wh} to settle in the same session.
        job_dir: run in this (caller-owned) directory and leave it, shares included.
        allocation: the double auction's registered rule (mpc_market.mpc.mechanism; 'pro-rata'
            for the benchmarks).

    Returns:
        The ClearingResult (with net_of: its ``settlement`` filled in).

    Raises:
        BadParameter: nodes outside 3..MAX_NODES.
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    if not 3 <= nodes <= MAX_NODES:
        raise BadParameter('nodes', f'nodes must be in 3..{MAX_NODES}')
    started = time.perf_counter()
    keep = keep or job_dir is not None
    job_dir = job_dir or tempfile.mkdtemp(prefix='mpc-market-job-', dir=workdir)
    try:
        spec = clearing_spec(book, nodes, chunk, allocation, net_of)
        spec.save(job_dir)
        procs = start_nodes(job_dir, nodes)  # nodes start up while the participants share
        try:
            share_packages(book, spec, job_dir, net_of, progress)
        except BaseException:
            stop_nodes(procs)
            raise
        shared = time.perf_counter()
        mark_ready(job_dir, nodes)
        if progress:
            progress('nodes', 0, nodes)
        wait_nodes(procs, job_dir, timeout, progress)
        return job_result(book, job_dir, spec, (started, shared, time.perf_counter()))
    finally:
        if not keep:
            shutil.rmtree(job_dir, ignore_errors=True)



def settle_mpc(book: Book, net_of: NetOf, sessions: int = 1,
               **kwargs: Any) -> SettlementResult:  # Any: the options of one of two signatures
    """Clear and settle; every owner reconstructs its own rows. Both ways equal the plaintext reference.

    Args:
        book: the orders and market; its extra pairs cover every reading.
        net_of: meter readings {(participant, slot): net Wh}.
        sessions: 1: in one MPC session; 2: as a deployment does, the settlement in a second
            session over the order shares the nodes kept from clearing (settle_after_clearing).
        kwargs: clear_mpc's (sessions=1) or settle_after_clearing's (2) options.

    Returns:
        The SettlementResult.

    Raises:
        BadParameter: nodes outside 3..MAX_NODES.
        EngineError: a node failed or timed out, or the nodes disagree.
    """
    clearing = clear_mpc(book, net_of=net_of, **kwargs) if sessions == 1 else settle_after_clearing(book, net_of,
                                                                                                    **kwargs)
    return settled_result(book, net_of, clearing)


def settled_result(book: Book, net_of: NetOf, clearing: ClearingResult) -> SettlementResult:
    """The SettlementResult of a clearing run with its settlement values.

    Args:
        book: the run's book.
        net_of: the meter readings {(participant, slot): net Wh} it settled.
        clearing: the run's ClearingResult, its ``settlement`` filled in.

    Returns:
        One row per order or reading, the retailer's view per slot and the bills.

    Raises:
        BadParameter: clearing carries no settlement values.
    """
    if clearing.settlement is None:
        raise BadParameter('clearing', 'a clearing run without settlement values (clear with net_of)')
    values, retailer = clearing.settlement['values'], clearing.settlement['retailer']
    pi, si = book.participant_index, book.slot_index
    outcomes = {slot: settlement.SlotSettlement(int(retailer[si[slot], 0]), int(retailer[si[slot], 1]),
                                                int(retailer[si[slot], 2])) for slot in book.slots}
    stats = dict(clearing.stats, meter_excluded=clearing.settlement['excluded'])
    return assemble(book, clearing, net_of,
                    lambda p, s: (int(values[pi[p], si[s], 0]), int(values[pi[p], si[s], 1])), outcomes, stats)



def settle_after_clearing(book: Book, net_of: NetOf, nodes: int = 3, chunk: int = ORDERS_PER_CHUNK,
                          workdir: str | None = None, progress: Progress | None = None,
                          timeout: float | None = None) -> ClearingResult:
    """Clear in one MPC session, then settle in a second one: the nodes keep the order shares of
    the clearing, get the readings' shares and the clearing's public outputs (who cleared, each
    slot's deviation price) and run only the settlement, with a fresh seed and fresh certificates.

    Args:
        book, nodes, chunk, workdir, progress, timeout: as for clear_mpc.
        net_of: meter readings {(participant, slot): net Wh}.

    Returns:
        The clearing result with its ``settlement`` filled in, as ``clear_mpc(net_of=...)``.

    Raises:
        BadParameter: nodes outside 3..MAX_NODES.
        EngineError: a node failed or timed out in either session, or the nodes disagree.
    """
    from ..market.book import encode_readings
    job_dir = tempfile.mkdtemp(prefix='mpc-market-job-', dir=workdir)
    try:
        clearing = clear_mpc(book, nodes, chunk, progress=progress, timeout=timeout, job_dir=job_dir)
        spec = replace(JobSpec.load(job_dir), settle=True, max_reading_wh=book.config.max_reading_wh)
        spec.save(job_dir)
        excluded = set(clearing.excluded)
        job = JobDir(job_dir)
        job.write_verdicts(ClearingVerdicts(
            cleared=[p for p in book.participants if p not in excluded],
            deviation_price2=[settlement.deviation_price2(book.config, s) for s in clearing.slots]))
        shutil.rmtree(job.tls)  # this session's own certificates
        for i in range(nodes):
            job.node(i).unmark_ready()  # the readings are not shared yet
        session = time.perf_counter()
        procs = start_nodes(job_dir, nodes, extra_args=('--settle-only',))
        try:
            share_book(book, spec, job_dir, encode=lambda rows: encode_readings(book, net_of, rows),
                       readings=True)
        except BaseException:
            stop_nodes(procs)
            raise
        mark_ready(job_dir, nodes)
        wait_nodes(procs, job_dir, timeout, progress)
        publics = read_public_outputs(job_dir, nodes)
        clearing = replace(clearing, settlement=settlement_values(job_dir, spec, publics))
        clearing.stats['settlement_session_timings'] = [p.figures.timings for p in publics]
        clearing.stats['settlement_session_s'] = time.perf_counter() - session  # start-up to reconstructed
        return clearing
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
