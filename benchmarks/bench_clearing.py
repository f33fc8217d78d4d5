"""Suite `clearing`: N participants x S slots cleared under MPC by 3 local node processes, per phase.

Market: floor 0.047, ceiling 0.139, tick 0.001 (93 levels), realistic generated community.
Per size: client sharing, node input/validation/clearing/allocation/output, end to end (book +
sharing + node processes + reconstruction); bytes sent per participant by one node; peak memory
per node; and whether MPC agreed with the plaintext reference.
"""

import time
from decimal import Decimal

from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.generate import community
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc.local import clear_mpc

from .suite import figure, profile_day

NAME, TITLE = 'clearing', 'Clearing under MPC: time per phase, bytes and memory'
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)
PHASES = ('input', 'validation', 'clearing', 'allocation', 'output')
COLUMNS = [('participants', 'participants'), ('slots', 'slots'), ('order vectors', 'order_vectors'),
           ('end to end s', 'seconds'), ('sharing (client) s', 'sharing_s'), ('validation s', 'validation_s'),
           ('clearing s', 'clearing_s'), ('allocation s', 'allocation_s'), ('output s', 'output_s'),
           ('KiB sent / participant / node', 'kib_per_participant'), ('peak MB per node', 'peak_rss_mb_per_node'),
           ('= reference', 'exact')]


def complete(row):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: a row with the script's fields (end_to_end_s, bytes_per_participant, agrees_with_reference).

    Returns:
        The row with seconds, exact, bytes_per_node and kib_per_participant added.
    """
    return dict(row, seconds=row['end_to_end_s'], exact=row.get('agrees_with_reference'),
                bytes_per_node=row['bytes_per_participant'] * row['participants'],
                kib_per_participant=round(row['bytes_per_participant'] / 1024, 1))


def one(participants, slots, nodes, seed, check, day=None):
    """Clear one generated community under MPC; the row of its figures."""
    raw = community(participants, slots, seed, profile_day=day)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    started = time.perf_counter()
    book = Book(CONFIG, orders)
    parse_s = time.perf_counter() - started
    result = clear_mpc(book, nodes=nodes)
    stats = result.stats
    timings = stats['node_timings']
    phases = {name: max(t.get(name, 0.0) for t in timings) for name in PHASES}
    row = {
        'participants': participants, 'slots': slots, 'orders': len(orders),
        'order_vectors': participants * len(book.slots), 'nodes': nodes,
        'book_s': round(parse_s, 3), 'sharing_s': round(stats['sharing_s'], 3),
        **{f'{k}_s': round(v, 3) for k, v in phases.items()},
        'nodes_s': round(stats['nodes_s'], 3),
        'end_to_end_s': round(parse_s + stats['total_s'], 3),
        'bytes_per_participant': round(stats['bytes_sent_per_participant']),
        'peak_rss_mb_per_node': stats['peak_rss_mb'],
        'traded_wh': sum(s.traded_wh for s in result.slots),
    }
    if check:
        plain = clear_plain(book)
        row['agrees_with_reference'] = plain.slots == result.slots and plain.rows == result.rows
    return complete(row)


def run(params, seed):
    """Every size of the preset (``sizes``: "NxS", participants x slots)."""
    rows = []
    for size in params['sizes']:
        participants, slots = map(int, size.lower().split('x'))
        row = one(participants, slots, params['nodes'], seed, params['check'], profile_day(params))
        rows.append(row)
        print(f'{participants:>7} x {slots:<3} {row["order_vectors"]:>7} order vectors: '
              f'end to end {row["end_to_end_s"]:7.2f} s '
              f'(sharing {row["sharing_s"]:.2f}, validation {row["validation_s"]:.2f}, '
              f'clearing {row["clearing_s"]:.2f}, '
              f'allocation {row["allocation_s"]:.2f}, output {row["output_s"]:.2f}); '
              f'{row["bytes_per_participant"] / 1024:.1f} KiB/participant sent per node; '
              f'peak {row["peak_rss_mb_per_node"]:.0f} MB/node'
              + (f'; agrees: {row["agrees_with_reference"]}' if params['check'] else ''), flush=True)
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'{params["nodes"]} node processes on localhost; end to end = building the book + client-side '
            'sharing + node processes + reconstruction; a phase is the slowest node\'s.']


def phase_bars(rows, labels, xlabel, phases, title, path):
    """Grouped bars per run: end to end and each phase, seconds on a log axis (phases span 3 decades)."""
    fig = figure()
    axis = fig.subplots()
    names = {'sharing': 'sharing (client)'}
    series = [('end to end', 'seconds')] + [(names.get(p, p), f'{p}_s') for p in phases]
    width = 0.8 / len(series)
    for k, (name, key) in enumerate(series):
        axis.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(rows))],
                 [max(r[key], 1e-3) for r in rows], width, label=name)  # 0.000 s drawn at 1 ms
    axis.set_xticks(range(len(rows)), labels)
    axis.set_yscale('log')
    axis.set_xlabel(xlabel)
    axis.set_ylabel('seconds (log scale)')
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, ncol=3)
    axis.grid(True, axis='y', which='both', alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def figures(rows, directory):
    path = f'{directory}/clearing.png'
    phase_bars(rows, [f'{r["participants"]:,} × {r["slots"]}' for r in rows], 'participants × slots',
               ('sharing', 'validation', 'clearing', 'allocation', 'output'),
               f'Clearing under MPC, {rows[0]["nodes"]} nodes (a node phase: the slowest node)', path)
    return [('time per phase and size', path)]
