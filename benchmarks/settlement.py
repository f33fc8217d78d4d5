"""Settlement benchmark: clear and settle N participants x 1 slot in one MPC session.

    python benchmarks/settlement.py                       # the issue's sizes and mechanisms
    python benchmarks/settlement.py --sizes 10000 --mechanisms sdr

Generated community with meter readings (forecast error ~15 %), 3 node processes on localhost.
Prints and saves (benchmarks/results/settlement-<cores>core.json and .csv) per-phase times
(client sharing, validation, clearing, allocation, settlement), end to end, bytes sent per
participant by one node, peak memory per node, and whether MPC agreed with the reference.
"""

import argparse
import dataclasses
import os
import sys
import time
from decimal import Decimal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from clearing import CONFIG  # noqa: E402
from common import machine, save_rows  # noqa: E402

from mpc_market.market import plain
from mpc_market.market.book import Book  # noqa: E402
from mpc_market.market.generate import community  # noqa: E402
from mpc_market.market.orders import Order  # noqa: E402
from mpc_market.mpc import local


def run(participants, mechanism, nodes, seed, check):
    raw, raw_readings = community(participants, 1, seed, with_readings=True)
    config = dataclasses.replace(CONFIG, mechanism=mechanism)
    started = time.perf_counter()
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    net_of = {(r['participant'], r['slot']): r['net_wh'] for r in raw_readings}
    book = Book(config, orders, extra_pairs=list(net_of))
    book_s = time.perf_counter() - started
    result = local.settle_mpc(book, net_of, nodes=nodes)
    stats = result.stats
    timings = stats['node_timings']
    phases = {name: max(t.get(name, 0.0) for t in timings)
              for name in ('validation', 'clearing', 'allocation', 'settlement')}
    row = {'participants': participants, 'mechanism': mechanism, 'nodes': nodes,
           'sharing_s': round(stats['sharing_s'], 3), **{f'{k}_s': round(v, 3) for k, v in phases.items()},
           'end_to_end_s': round(book_s + stats['total_s'], 3),
           'bytes_per_participant': round(stats['bytes_sent_per_participant']),
           'peak_rss_mb_per_node': stats['peak_rss_mb']}
    if check:
        reference = plain.settle_plain(book, net_of)
        row['agrees_with_reference'] = (reference.rows == result.rows and reference.bills == result.bills
                                        and reference.slots == result.slots)
        row['money_balances'] = sum(r.deviation_amount for r in result.rows) == sum(
            s.retailer_net for s in result.slots.values())
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', type=int, default=[1000, 10000, 100000])
    parser.add_argument('--mechanisms', nargs='+', default=['sdr', 'mmr', 'bill-sharing'],
                        help='community schemes, run at --scheme-size participants')
    parser.add_argument('--scheme-size', type=int, default=10000)
    parser.add_argument('--nodes', type=int, default=3)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--no-check', action='store_true')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results'))
    args = parser.parse_args()
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["cpu"]}, Python {info["python"]}; {args.nodes} nodes on localhost')
    runs = [(n, 'double-auction') for n in args.sizes] + [(args.scheme_size, m) for m in args.mechanisms]
    rows = []
    for participants, mechanism in runs:
        row = run(participants, mechanism, args.nodes, args.seed, not args.no_check)
        rows.append(row)
        print(f'{participants:>7} x 1 {mechanism:<14} end to end {row["end_to_end_s"]:6.2f} s (sharing '
              f'{row["sharing_s"]:.2f}, validation {row["validation_s"]:.2f}, clearing {row["clearing_s"]:.2f}, '
              f'allocation {row["allocation_s"]:.2f}, settlement {row["settlement_s"]:.2f}); '
              f'{row["bytes_per_participant"] / 1024:.1f} KiB/participant sent per node; '
              f'peak {row["peak_rss_mb_per_node"]:.0f} MB/node'
              + ('' if args.no_check else f'; agrees: {row["agrees_with_reference"]}, '
                                          f'balances: {row["money_balances"]}'), flush=True)
    save_rows(args.out, 'settlement', info, rows)


if __name__ == '__main__':
    main()
