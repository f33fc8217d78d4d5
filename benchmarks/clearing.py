"""Clearing benchmark: N participants x S slots cleared under MPC by 3 local node processes.

    python benchmarks/clearing.py                      # the issue's sizes
    python benchmarks/clearing.py --sizes 1000x1 10000x1

Market: floor 0.047, ceiling 0.139, tick 0.001 (93 levels), realistic generated community.
Prints and saves (benchmarks/results/clearing-<host>.json and .csv) per-phase times: client
sharing, node input/validation/clearing/allocation/output, end to end; bytes sent per
participant by one node; peak memory per node; and whether MPC agreed with the reference.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from decimal import Decimal  # noqa: E402

from common import machine, save_rows  # noqa: E402

from mpc_market.market.book import Book  # noqa: E402
from mpc_market.market.config import MarketConfig
from mpc_market.market.generate import community  # noqa: E402
from mpc_market.market.orders import Order  # noqa: E402
from mpc_market.market.plain import clear_plain  # noqa: E402
from mpc_market.mpc.local import clear_mpc

DEFAULT_SIZES = ['100x1', '1000x1', '10000x1', '100000x1', '1000x96']
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)


def run(participants, slots, nodes, seed, check):
    raw = community(participants, slots, seed)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    started = time.perf_counter()
    book = Book(CONFIG, orders)
    parse_s = time.perf_counter() - started
    result = clear_mpc(book, nodes=nodes)
    stats = result.stats
    timings = stats['node_timings']
    phases = {name: max(t.get(name, 0.0) for t in timings)
              for name in ('input', 'validation', 'clearing', 'allocation', 'output')}
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
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', default=DEFAULT_SIZES, help='NxS: participants x slots')
    parser.add_argument('--nodes', type=int, default=3)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--no-check', action='store_true', help='skip the plaintext comparison')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results'))
    args = parser.parse_args()
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["cpu"]}, Python {info["python"]}; {args.nodes} nodes on localhost')
    rows = []
    for size in args.sizes:
        participants, slots = map(int, size.lower().split('x'))
        row = run(participants, slots, args.nodes, args.seed, not args.no_check)
        rows.append(row)
        print(f'{participants:>7} x {slots:<3} {row["order_vectors"]:>7} order vectors: '
              f'end to end {row["end_to_end_s"]:7.2f} s '
              f'(sharing {row["sharing_s"]:.2f}, validation {row["validation_s"]:.2f}, '
              f'clearing {row["clearing_s"]:.2f}, '
              f'allocation {row["allocation_s"]:.2f}, output {row["output_s"]:.2f}); '
              f'{row["bytes_per_participant"] / 1024:.1f} KiB/participant sent per node; '
              f'peak {row["peak_rss_mb_per_node"]:.0f} MB/node'
              + ('' if args.no_check else f'; agrees: {row["agrees_with_reference"]}'), flush=True)
    save_rows(args.out, 'clearing', info, rows)


if __name__ == '__main__':
    main()
