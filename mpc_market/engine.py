"""Clearing engines with one result format: the plaintext reference and local MPC.

``clear_mpc`` plays every participant (client-side Shamir sharing, one package per node),
starts the market nodes as separate OS processes talking MPyC over TCP on 127.0.0.1, and
finally plays every owner again, reconstructing each participant's rows from the nodes'
result shares.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from . import field as ff
from . import reference
from .encoding import Book
from .jobs import JobSpec, node_dir, write_json

MAX_NODES = 7


class EngineError(Exception):
    """The secure computation failed (a node crashed or timed out)."""


@dataclass
class OrderRow:
    participant: str
    slot: int
    side: str
    energy_wh: int
    matched_wh: int
    unmatched_wh: int
    amount: int  # 10**-(decimals+3) currency; > 0 pays, < 0 is paid
    status: str  # 'cleared', 'retailer' (cannot trade locally) or 'excluded' (invalid package)


@dataclass
class SlotRow:
    slot: int
    level: int | None
    price_units: int | None
    traded_wh: int
    residual_wh: int
    buy_price_units: int | None = None   # community schemes: the slot's buy and sell prices
    sell_price_units: int | None = None


@dataclass
class ClearingResult:
    slots: list
    rows: list
    excluded: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    settlement: dict | None = None  # MPC settlement: deviation/amount values, retailer values


def _retailer_row(config, order, status):
    """An order settled wholly with the retailer (excluded, or unable to trade locally)."""
    amount = reference.order_amount(config, order.side, order.energy_wh, 0, None)
    return OrderRow(order.participant, order.slot, order.side, order.energy_wh, 0, order.energy_wh, amount, status)


def _rows(book, matched_of, excluded):
    """Order rows from a function (participant, slot) -> (matched, unmatched, amount)."""
    rows = []
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        if o.participant in excluded or position is None:
            rows.append(_retailer_row(book.config, o, 'excluded' if o.participant in excluded else 'retailer'))
        else:
            matched, unmatched, amount = matched_of(o)
            rows.append(OrderRow(o.participant, o.slot, o.side, o.energy_wh, matched, unmatched, amount, 'cleared'))
    return rows


def _slot_row(config, slot, level, traded, residual):
    if level is None or traded == 0:
        return SlotRow(slot, None, None, 0, 0)
    return SlotRow(slot, level, config.level_price_units(level), traded, residual)


def scheme_rows(book, prices_of):
    """Community schemes: every order trades whole at its slot's buy or sell price."""
    rows = []
    for o in book.orders:
        buy, sell = prices_of(o.slot)
        amount = o.energy_wh * buy if o.side == 'buy' else -o.energy_wh * sell
        rows.append(OrderRow(o.participant, o.slot, o.side, o.energy_wh, o.energy_wh, 0, amount, 'cleared'))
    return rows


def clear_plain_scheme(book: Book) -> ClearingResult:
    """Plaintext reference of the community pricing schemes (supply-demand ratio, ...)."""
    from .schemes import scheme_prices
    started = time.perf_counter()
    config = book.config
    supply = {s: 0 for s in book.slots}
    demand = {s: 0 for s in book.slots}
    for o in book.orders:
        (supply if o.side == 'sell' else demand)[o.slot] += o.energy_wh
    prices = {s: scheme_prices(config.mechanism, supply[s], demand[s], config.floor_units, config.ceiling_units)
              for s in book.slots}
    slots = [SlotRow(s, None, None, 0, 0, *prices[s]) for s in book.slots]
    return ClearingResult(slots, scheme_rows(book, prices.get), [],
                          {'engine': 'plain', 'total_s': time.perf_counter() - started})


def clear_plain(book: Book) -> ClearingResult:
    """The plaintext reference on the whole book."""
    if book.config.mechanism != 'double-auction':
        return clear_plain_scheme(book)
    started = time.perf_counter()
    config, k = book.config, book.config.levels
    by_slot = {s: [] for s in book.slots}
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        if position is not None:
            side, level = ('sell', position) if position < k else ('buy', position - k)
            by_slot[o.slot].append((o, side, level))
    slots, outcome = [], {}
    for s in book.slots:
        entries = by_slot[s]
        result, matched = reference.clear_slot([(side, lv, o.energy_wh) for o, side, lv in entries], k)
        slots.append(_slot_row(config, s, result.level, result.traded_wh, result.residual_wh))
        price = slots[-1].price_units
        for (o, side, _), m in zip(entries, matched):
            outcome[(o.participant, o.slot)] = (m, o.energy_wh - m,
                                                reference.order_amount(config, o.side, o.energy_wh, m, price))
    rows = _rows(book, lambda o: outcome[(o.participant, o.slot)], set())
    return ClearingResult(slots, rows, [], {'engine': 'plain', 'total_s': time.perf_counter() - started})


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


def job_spec(book, nodes, chunk):
    """Public job parameters; chunk = orders (participant x slot vectors) streamed at once."""
    spec = config_spec(book.config, book.slots, nodes, max(1, chunk // max(1, len(book.slots))))
    spec.participants = book.participants
    return spec


def config_spec(config, slots, nodes, chunk):
    """Job parameters of a market config and slots (participants still to be filled in)."""
    return JobSpec(nodes=nodes, threshold=(nodes - 1) // 2, levels=config.levels,
                   energy_bits=config.energy_bits, max_order_wh=config.max_order_wh,
                   floor_units=config.floor_units, ceiling_units=config.ceiling_units,
                   tick_units=config.price_units(config.tick),
                   participants=[], slots=list(slots), chunk=chunk, mechanism=config.mechanism)


def share_book(book, spec, job_dir, progress=None, tamper=None, encode=None, name='shares.npy'):
    """Play every participant: encode its vectors, Shamir-share them, give node i its package.

    encode(participant_indices) -> (n, slots, width) values; the order vectors by default.
    tamper(node_index, participant_indices, data) may alter values (node None) or one node's
    shares (tests of malicious input). With several chunks, a forked worker shares every other
    chunk on the second core (the nodes are idle until the packages are ready).
    """
    encode = encode or book.encode
    n_p, n_s = len(book.participants), len(book.slots)
    width = encode(range(0, min(1, n_p))).shape[-1]
    paths = [os.path.join(node_dir(job_dir, i), name) for i in range(spec.nodes)]
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.lib.format.open_memmap(path, mode='w+', dtype=np.uint32, shape=(ff.LIMBS, n_p, n_s, width)).flush()
    step = max(256, min(spec.chunk, -(-n_p // 8)))  # small enough to split evenly between two workers
    chunks = [(start, min(start + step, n_p)) for start in range(0, n_p, step)]

    def share_chunks(mine, report):
        outputs = [np.load(path, mmap_mode='r+') for path in paths]
        for start, stop in mine:
            values = encode(range(start, stop))
            if tamper is not None:
                values = tamper(None, range(start, stop), values)
            shares = ff.share_values(values, spec.threshold, spec.nodes)
            for i, out in enumerate(outputs):
                block = shares[i] if tamper is None else tamper(i, range(start, stop), shares[i])
                out[:, start:stop] = block
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
    for i in range(spec.nodes):
        write_json(os.path.join(node_dir(job_dir, i), 'held.json'), book.participants)


def _relay_progress(log_path, offset, progress):
    """Pass node 0's 'progress PHASE DONE TOTAL' lines to the callback; return the new offset."""
    with open(log_path) as f:
        f.seek(offset)
        text = f.read()
    complete = text[:text.rfind('\n') + 1]
    for line in complete.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == 'progress' and progress:
            progress(parts[1], int(parts[2]), int(parts[3]))
    return offset + len(complete)


def ephemeral_node_keys(job_dir, nodes, host):
    """A per-run CA and node certificates in the private job directory, so the local node
    processes accept MPyC links only from each other; the CA key is deleted once they are issued."""
    from . import keys
    tls = os.path.join(job_dir, 'tls')
    keys.create_ca(tls)
    for i in range(nodes):
        keys.create_node(tls, i, hosts=(host,))
    os.remove(os.path.join(tls, 'ca', 'ca.key'))
    return tls


def start_nodes(job_dir, nodes, host='127.0.0.1', extra_args=()):
    """Start the node processes; they connect, then wait for each node dir's 'ready' file."""
    ports = free_ports(nodes)
    parties = ','.join(f'{host}:{p}' for p in ports)
    tls = ephemeral_node_keys(job_dir, nodes, host)
    procs = []
    for i in range(nodes):
        os.makedirs(node_dir(job_dir, i), exist_ok=True)
        log = open(os.path.join(node_dir(job_dir, i), 'node.log'), 'w')
        procs.append((subprocess.Popen([sys.executable, '-m', 'mpc_market.mpc.node', '--job', job_dir,
                                        '--index', str(i), '--parties', parties, '--keys', tls, *extra_args],
                                       stdout=log, stderr=subprocess.STDOUT), log))
    return procs


def mark_ready(job_dir, nodes):
    for i in range(nodes):
        with open(os.path.join(node_dir(job_dir, i), 'ready'), 'w'):
            pass


def stop_nodes(procs):
    for proc, log in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def wait_nodes(procs, job_dir, timeout=None, progress=None):
    """Wait for all node processes; raise EngineError on any failure (killing the others)."""
    nodes = len(procs)
    deadline = None if timeout is None else time.monotonic() + timeout
    failed, offset = None, 0
    log0 = os.path.join(node_dir(job_dir, 0), 'node.log')
    while any(proc.poll() is None for proc, _ in procs):
        crashed = [i for i, (proc, _) in enumerate(procs) if proc.poll() not in (None, 0)]
        if crashed:  # a lost peer would make the others wait forever
            failed = f'node {crashed[0]} exited with status {procs[crashed[0]][0].returncode}'
            break
        if deadline is not None and time.monotonic() > deadline:
            failed = f'nodes timed out after {timeout} s'
            break
        offset = _relay_progress(log0, offset, progress)
        time.sleep(0.05)
    _relay_progress(log0, offset, progress)
    for i, (proc, _) in enumerate(procs):
        if failed is None and proc.poll() not in (None, 0):
            failed = f'node {i} exited with status {proc.returncode}'
    stop_nodes(procs)
    if failed:
        tail = ''
        for i in range(nodes):
            with open(os.path.join(node_dir(job_dir, i), 'node.log')) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip() and not ln.startswith('progress ')]
            if lines:
                tail = f'{lines[-1]} (node {i})'
                break
        raise EngineError(f'{failed}; {tail}' if tail else failed)


def run_nodes(job_dir, nodes, timeout=None, host='127.0.0.1', extra_args=(), progress=None):
    """Start the nodes on packages already written and wait for them."""
    procs = start_nodes(job_dir, nodes, host, extra_args)
    mark_ready(job_dir, nodes)
    wait_nodes(procs, job_dir, timeout, progress)


def reconstruct(job_dir, spec, name='results.npy'):
    """Play every owner: recombine result shares from all nodes (checking consistency)."""
    per_node = [np.load(os.path.join(node_dir(job_dir, i), name)) for i in range(spec.nodes)]
    ints = [ff.to_ints(r) for r in per_node]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise EngineError('result shares from the nodes are inconsistent')
    return ff.signed(values)  # (participants, slots, 3)


def _read_publics(job_dir, nodes):
    publics = []
    for i in range(nodes):
        with open(os.path.join(node_dir(job_dir, i), 'public.json')) as f:
            publics.append(json.load(f))
    if any(p['slots'] != publics[0]['slots'] for p in publics):
        raise EngineError('nodes disagree on the public results')
    return publics


def public_slot_rows(config, public_slots):
    """SlotRows from the nodes' opened public outputs (public.json 'slots')."""
    if config.mechanism != 'double-auction':
        return [SlotRow(s['slot'], None, None, 0, 0, s['buy_price_units'], s['sell_price_units']) for s in public_slots]
    return [_slot_row(config, s['slot'], s['level'] if s['level'] >= 0 else None, s['traded_wh'], s['residual_wh'])
            for s in public_slots]


def order_rows(book, excluded, values_of):
    """OrderRows from reconstructed (matched, unmatched, amount) per order; excluded settle with the retailer."""
    if book.config.mechanism != 'double-auction':  # whole orders at the scheme prices
        return [OrderRow(o.participant, o.slot, o.side, o.energy_wh, *values_of(o), 'cleared')
                if o.participant not in excluded else _retailer_row(book.config, o, 'excluded')
                for o in book.orders]
    return _rows(book, values_of, excluded)


def _mpc_result(book, publics, values_of, times):
    started, shared, computed = times
    public = publics[0]
    excluded = set(public['excluded']) | set(public['missing'])
    rows = order_rows(book, excluded, values_of)
    slots = public_slot_rows(book.config, public['slots'])
    finished = time.perf_counter()
    n = max(1, len(book.participants))
    stats = {
        'engine': 'mpc', 'nodes': len(publics),
        'sharing_s': shared - started, 'nodes_s': computed - shared, 'output_s': finished - computed,
        'total_s': finished - started,
        'node_timings': [p['timings'] for p in publics],
        'bytes_sent_per_participant': max(p['bytes_sent'] for p in publics) / n,
        'peak_rss_mb': max(p['peak_rss_mb'] for p in publics),
    }
    return ClearingResult(slots, rows, sorted(excluded), stats)


def clear_peers(book: Book, progress=None, timeout=None, workdir=None, keep=False) -> ClearingResult:
    """Scenario S1: one node per participant (3..7), each sharing its own orders."""
    nodes = len(book.participants)
    if not 3 <= nodes <= MAX_NODES:
        raise EngineError(f'peers mode needs 3..{MAX_NODES} participants, got {nodes}')
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-peers-', dir=workdir)
    try:
        spec = job_spec(book, nodes, 8192)
        spec.mode = 'peers'
        spec.save(job_dir)
        for i in range(nodes):
            os.makedirs(node_dir(job_dir, i))
            np.save(os.path.join(node_dir(job_dir, i), 'own_orders.npy'), book.encode([i])[0])
        shared = time.perf_counter()
        if progress:
            progress('nodes', 0, nodes)
        run_nodes(job_dir, nodes, timeout, extra_args=('--peers',), progress=progress)
        computed = time.perf_counter()
        publics = _read_publics(job_dir, nodes)
        own = [np.load(os.path.join(node_dir(job_dir, i), 'own_results.npy')) for i in range(nodes)]
        pi, si = book.participant_index, book.slot_index
        return _mpc_result(book, publics, lambda o: tuple(int(v) for v in own[pi[o.participant]][si[o.slot]]),
                           (started, shared, computed))
    finally:
        if not keep:
            shutil.rmtree(job_dir, ignore_errors=True)


def clear_mpc(book: Book, nodes=3, chunk=8192, workdir=None, keep=False, progress=None, timeout=None,
              tamper=None, net_of=None, reading_tamper=None) -> ClearingResult:
    """Clear under MPC; with net_of (meter readings) also settle deviations in the same session."""
    if not 3 <= nodes <= MAX_NODES:
        raise ValueError(f'nodes must be in 3..{MAX_NODES}')
    started = time.perf_counter()
    job_dir = tempfile.mkdtemp(prefix='mpc-market-job-', dir=workdir)
    try:
        spec = job_spec(book, nodes, chunk)
        if net_of is not None:
            from .encoding import encode_readings
            spec.settle, spec.max_reading_wh = True, book.config.max_reading_wh
        spec.save(job_dir)
        procs = start_nodes(job_dir, nodes)  # nodes start up while the participants share
        try:
            share_book(book, spec, job_dir, progress, tamper)
            if net_of is not None:
                share_book(book, spec, job_dir, None, reading_tamper,
                           encode=lambda rows: encode_readings(book, net_of, rows), name='readings.npy')
        except BaseException:
            stop_nodes(procs)
            raise
        shared = time.perf_counter()
        mark_ready(job_dir, nodes)
        if progress:
            progress('nodes', 0, nodes)
        wait_nodes(procs, job_dir, timeout, progress)
        computed = time.perf_counter()
        publics = _read_publics(job_dir, nodes)
        values = reconstruct(job_dir, spec)
        pi, si = book.participant_index, book.slot_index
        result = _mpc_result(book, publics, lambda o: tuple(int(v) for v in values[pi[o.participant], si[o.slot]]),
                             (started, shared, computed))
        if spec.settle:
            result.settlement = {'values': reconstruct(job_dir, spec, 'settlement.npy'),
                                 'retailer': reconstruct(job_dir, spec, 'retailer.npy'),
                                 'excluded': publics[0]['meter_excluded']}
        return result
    finally:
        if not keep:
            shutil.rmtree(job_dir, ignore_errors=True)
