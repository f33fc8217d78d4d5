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
from dataclasses import replace

import numpy as np

from ..common.errors import EngineError
from ..market import settlement
from ..market.book import Book
from ..market.results import ClearingResult, assemble, order_rows, public_slot_rows
from . import field as ff
from .jobs import ORDERS_PER_CHUNK, ClearingVerdicts, JobDir, job_spec
from .supervisor import PartyProcess, relay_progress, supervise

MAX_NODES = 11




def free_ports(count):
    """count TCP ports free on 127.0.0.1 right now."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports



def share_book(book, spec, job_dir, progress=None, encode=None, readings=False):
    """Play every participant: encode its vectors, Shamir-share them, give node i its package.

    encode(participant_indices) -> (n, slots, width) values; the order vectors by default.
    readings: the packages are meter readings (readings.npy), not orders (shares.npy).
    With several chunks, a forked worker shares every other
    chunk on the second core (the nodes are idle until the packages are ready).
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

    def share_chunks(mine, report):
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
    if len(chunks) > 1 and os.cpu_count() > 1:
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



def ephemeral_node_keys(job_dir, nodes, host):
    """A per-run CA and node certificates in the private job directory, so the local node
    processes accept MPyC links only from each other; the CA key is deleted once they are issued."""
    from ..common import keys
    tls = JobDir(job_dir).tls
    keys.create_ca(tls)
    for i in range(nodes):
        keys.create_node(tls, i, hosts=(host,))
    os.remove(os.path.join(tls, 'ca', 'ca.key'))
    return tls



def start_nodes(job_dir: str, nodes: int, host: str = '127.0.0.1', extra_args=()) -> list:
    """Start the node processes (PartyProcess each); they connect, then wait for each node's
    ready flag."""
    ports = free_ports(nodes)
    parties = ','.join(f'{host}:{p}' for p in ports)
    tls = ephemeral_node_keys(job_dir, nodes, host)
    job = JobDir(job_dir)
    return [PartyProcess([sys.executable, '-m', 'mpc_market.mpc.node', '--job', job_dir, '--index', str(i),
                          '--parties', parties, '--keys', tls, *extra_args], job.node(i).make().log)
            for i in range(nodes)]


def mark_ready(job_dir: str, nodes: int) -> None:
    """Every party's packages are complete."""
    for i in range(nodes):
        JobDir(job_dir).node(i).mark_ready()


def stop_nodes(parties: list) -> None:
    for party in parties:
        party.kill()


def wait_nodes(parties: list, job_dir: str, timeout: float | None = None, progress=None) -> None:
    """Wait for all node processes; raise EngineError on any failure (the others killed)."""
    log0, offset = JobDir(job_dir).node(0).log, [0]

    def relay():
        offset[0] = relay_progress(log0, offset[0], progress)
    failure = supervise(parties, timeout, tick=relay)
    if failure is None:
        return
    failed = (f'nodes timed out after {timeout} s' if failure.kind == 'timeout'
              else f'node {failure.index} exited with status {failure.returncode}')
    said = [(i, party.lines()) for i, party in enumerate(parties)]
    tail = next((f'{lines[-1]} (node {i})' for i, lines in said if lines), '')
    raise EngineError(f'{failed}; {tail}' if tail else failed)


def run_nodes(job_dir, nodes, timeout=None, host='127.0.0.1', extra_args=(), progress=None):
    """Start the nodes on packages already written and wait for them."""
    procs = start_nodes(job_dir, nodes, host, extra_args)
    mark_ready(job_dir, nodes)
    wait_nodes(procs, job_dir, timeout, progress)



def reconstruct(job_dir, spec, shares='results'):
    """Play every owner: recombine result shares from all nodes (checking consistency).
    shares: which of NodeFiles' share files ('results', 'settlement', 'retailer')."""
    job = JobDir(job_dir)
    per_node = [np.load(getattr(job.node(i), shares)) for i in range(spec.nodes)]
    ints = [ff.to_ints(r) for r in per_node]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise EngineError('result shares from the nodes are inconsistent')
    return ff.signed(values)  # (participants, slots, 3)



def read_public_outputs(job_dir, nodes):
    """Every party's PublicOutputs; EngineError unless all opened the same public values."""
    publics = [JobDir(job_dir).node(i).read_public() for i in range(nodes)]
    if any(p.differs_from(publics[0]) for p in publics):
        raise EngineError('nodes disagree on the public results')
    return publics



def settlement_values(job_dir, spec, publics):
    """ClearingResult.settlement of a run: the reconstructed deviation/amount and retailer values
    and the participants whose meter packages failed."""
    return {'values': reconstruct(job_dir, spec, 'settlement'), 'retailer': reconstruct(job_dir, spec, 'retailer'),
            'excluded': publics[0].meter_excluded}


def job_result(book, job_dir, spec, times):
    """The ClearingResult of a finished job: every party's public outputs (checked equal), each
    owner's reconstructed rows and, with spec.settle, the settlement values. times: (started, shared,
    computed) perf_counter readings."""
    publics = read_public_outputs(job_dir, spec.nodes)
    values = reconstruct(job_dir, spec)
    pi, si = book.participant_index, book.slot_index
    result = mpc_result(book, publics, lambda o: tuple(int(v) for v in values[pi[o.participant], si[o.slot]]), times)
    if spec.settle:
        result = replace(result, settlement=settlement_values(job_dir, spec, publics))
    return result


def mpc_result(book, publics, values_of, times):
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
    return ClearingResult(slots, rows, sorted(excluded), stats)



def clear_peers(book: Book, committee=None, round_id='local', progress=None, timeout=None, workdir=None,
                keep=False, keys_dir=None) -> ClearingResult:
    """Scenario S1: the peers draw a committee of market nodes by lottery (every peer up to 7);
    each committee peer shares its own orders from its node, every other peer as a client.
    Every peer signs its lottery messages with its own key: from keys_dir (``keys participants``;
    its registry must list exactly the book's participants) or, by default, a fresh key per peer
    and run. The lottery's public transcript, with a copy of those public keys, is in
    ``stats['committee']``."""
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

        def client_orders(rows):  # the committee's rows are filled in by the nodes themselves
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



def clear_mpc(book: Book, nodes=3, chunk=ORDERS_PER_CHUNK, workdir=None, keep=False, progress=None, timeout=None,
              net_of=None, job_dir=None, allocation='merit-order') -> ClearingResult:
    """Clear under MPC; with net_of (meter readings) also settle deviations in the same session.
    job_dir: run in this (caller-owned) directory and leave it, shares included. allocation: the
    double auction's registered rule (mpc_market.mpc.mechanism; 'pro-rata' for the benchmarks)."""
    if not 3 <= nodes <= MAX_NODES:
        raise ValueError(f'nodes must be in 3..{MAX_NODES}')
    started = time.perf_counter()
    keep = keep or job_dir is not None
    job_dir = job_dir or tempfile.mkdtemp(prefix='mpc-market-job-', dir=workdir)
    try:
        spec = replace(job_spec(book, nodes, chunk), allocation=allocation)
        if net_of is not None:
            from ..market.book import encode_readings
            spec = replace(spec, settle=True, max_reading_wh=book.config.max_reading_wh)
        spec.save(job_dir)
        procs = start_nodes(job_dir, nodes)  # nodes start up while the participants share
        try:
            share_book(book, spec, job_dir, progress)
            if net_of is not None:
                share_book(book, spec, job_dir, encode=lambda rows: encode_readings(book, net_of, rows),
                           readings=True)
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



def settle_mpc(book, net_of, sessions=1, **kwargs):
    """Clear and settle; every owner reconstructs its own rows. sessions=1: in one MPC session;
    2: as a deployment does, the settlement in a second session over the order shares the nodes
    kept from clearing (settle_after_clearing). Both equal the plaintext reference."""
    clearing = clear_mpc(book, net_of=net_of, **kwargs) if sessions == 1 else settle_after_clearing(book, net_of,
                                                                                                    **kwargs)
    return settled_result(book, net_of, clearing)


def settled_result(book, net_of, clearing):
    """The SettlementResult of a clearing run with its settlement values (ClearingResult.settlement)."""
    values, retailer = clearing.settlement['values'], clearing.settlement['retailer']
    pi, si = book.participant_index, book.slot_index
    outcomes = {slot: settlement.SlotSettlement(int(retailer[si[slot], 0]), int(retailer[si[slot], 1]),
                                                int(retailer[si[slot], 2])) for slot in book.slots}
    stats = dict(clearing.stats, meter_excluded=clearing.settlement['excluded'])
    return assemble(book, clearing, net_of,
                    lambda p, s: (int(values[pi[p], si[s], 0]), int(values[pi[p], si[s], 1])), outcomes, stats)



def settle_after_clearing(book, net_of, nodes=3, chunk=ORDERS_PER_CHUNK, workdir=None, progress=None, timeout=None):
    """Clear in one MPC session, then settle in a second one: the nodes keep the order shares of
    the clearing, get the readings' shares and the clearing's public outputs (who cleared, each
    slot's deviation price) and run only the settlement, with a fresh seed and fresh certificates.
    Returns the clearing result with its ``settlement`` filled in, as ``clear_mpc(net_of=...)``."""
    from ..market.book import encode_readings
    from .jobs import JobSpec
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
