"""Market-rule benchmark: merit order vs the old pro-rata rule, and the zoned market vs one market.

    python benchmarks/rules.py                         # 10,000 participants x 1 slot, 4 zones
    python benchmarks/rules.py --sizes 10000x1 200x96 --zones 4 --repeat 3

The same generated community (floor 0.047, ceiling 0.139, tick 0.001: 93 levels) is cleared
under MPC by 3 local node processes three ways, interleaved and repeated in one run:
  merit      the product's rule (one market, merit order);
  pro-rata   the rule merit order replaced (benchmarks/prorata, a benchmark-only harness);
  zoned      the same orders in N communities of whole feeders, network fee 0.010/kWh.
Prints and saves (benchmarks/results/rules-<cores>core.json and .csv) the median node and end-to-end
times per rule, the ratios pro-rata/merit and zoned/merit, and whether each agreed with its
plaintext reference.
"""

import argparse
import os
import statistics
import sys
from dataclasses import replace
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
sys.path.insert(0, os.path.join(HERE, 'prorata'))

from common import machine, save_rows  # noqa: E402
from sitecustomize import prorata_clear_slot  # noqa: E402

from mpc_market.market.book import Book  # noqa: E402
from mpc_market.market.config import MarketConfig  # noqa: E402
from mpc_market.market.generate import community, feeder_map  # noqa: E402
from mpc_market.market.orders import Order  # noqa: E402
from mpc_market.market.plain import clear_plain  # noqa: E402
from mpc_market.mpc.local import clear_mpc  # noqa: E402

CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)


def books(participants, slots, zones, seed):
    raw = community(participants, slots, seed)
    feeders = feeder_map(sorted({o['participant'] for o in raw}), zones)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price']),
                    zone=feeders[o['participant']][1]) for o in raw]
    zoned = replace(CONFIG, zoned=True, network_fee=Decimal('0.010'))
    return Book(CONFIG, orders), Book(zoned, orders)


def agrees_prorata(book, result):
    """The harness's MPC output against the old rule's plaintext reference."""
    k = book.config.levels
    by_slot = {s: [] for s in book.slots}
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        if position is not None:
            by_slot[o.slot].append((o, ('sell', position) if position < k else ('buy', position - k)))
    rows = {(r.participant, r.slot): r for r in result.rows}
    for slot_row in result.slots:
        entries = by_slot[slot_row.slot]
        level, volume, residual, matched = prorata_clear_slot([(s, lv, o.energy_wh) for o, (s, lv) in entries], k)
        if (slot_row.level, slot_row.traded_wh, slot_row.residual_wh) != (level, volume, residual):
            return False
        if any(rows[(o.participant, o.slot)].matched_wh != m for (o, _), m in zip(entries, matched, strict=True)):
            return False
    return True


def run_rule(rule, unzoned, zoned, nodes):
    env = {'pro-rata': {'PYTHONPATH': os.pathsep.join(filter(None, [os.path.join(HERE, 'prorata'),
                                                                     os.environ.get('PYTHONPATH')])),
                        'MPC_MARKET_BENCH_RULE': 'pro-rata'}}.get(rule, {})
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        book = zoned if rule == 'zoned' else unzoned
        result = clear_mpc(book, nodes=nodes)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if rule == 'pro-rata':
        agrees = agrees_prorata(book, result)
    else:
        plain = clear_plain(book)
        agrees = plain.slots == result.slots and plain.rows == result.rows
    return result.stats, agrees


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', nargs='+', default=['10000x1'], help='NxS: participants x slots')
    parser.add_argument('--zones', type=int, default=4)
    parser.add_argument('--repeat', type=int, default=3, help='runs per rule, interleaved')
    parser.add_argument('--nodes', type=int, default=3)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--out', default=os.path.join(HERE, 'results'))
    args = parser.parse_args()
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["cpu"]}, Python {info["python"]}; {args.nodes} nodes on localhost')
    rules = ('merit', 'pro-rata', 'zoned')
    rows = []
    for size in args.sizes:
        participants, slots = map(int, size.lower().split('x'))
        unzoned, zoned = books(participants, slots, args.zones, args.seed)
        times = {r: {'nodes_s': [], 'total_s': []} for r in rules}
        agree = {r: True for r in rules}
        for _ in range(args.repeat):
            for rule in rules:
                stats, ok = run_rule(rule, unzoned, zoned, args.nodes)
                times[rule]['nodes_s'].append(stats['nodes_s'])
                times[rule]['total_s'].append(stats['total_s'])
                agree[rule] &= ok
        median = {r: {k: statistics.median(v) for k, v in times[r].items()} for r in rules}
        row = {'participants': participants, 'slots': slots, 'zones': args.zones, 'repeat': args.repeat,
               **{f'{r}_{k}': round(median[r][k], 3) for r in rules for k in ('nodes_s', 'total_s')},
               'prorata_over_merit_nodes': round(median['pro-rata']['nodes_s'] / median['merit']['nodes_s'], 3),
               'zoned_over_merit_nodes': round(median['zoned']['nodes_s'] / median['merit']['nodes_s'], 3),
               'zoned_over_merit_total': round(median['zoned']['total_s'] / median['merit']['total_s'], 3),
               **{f'{r}_agrees': agree[r] for r in rules}}
        rows.append(row)
        print(f'{participants:>6} x {slots:<3} median node time of {args.repeat}: merit {row["merit_nodes_s"]:.2f} s, '
              f'pro-rata {row["pro-rata_nodes_s"]:.2f} s, zoned ({args.zones} zones) {row["zoned_nodes_s"]:.2f} s | '
              f'merit/pro-rata {1 / row["prorata_over_merit_nodes"]:.2f}x, zoned/merit '
              f'{row["zoned_over_merit_nodes"]:.2f}x (end to end {row["zoned_over_merit_total"]:.2f}x) | '
              f'references agree: {all(agree.values())}')
    save_rows(args.out, 'rules', info, rows)


if __name__ == '__main__':
    main()
