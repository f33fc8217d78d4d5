"""Suite `baseline`: mpc_market's clearing against the textbook sort-based MPyC clearing.

Both clear the same generated orders (N participants x 1 slot) in the same run, each with 3
parties on this machine: mpc_market (client-side sharing, validation, crossing, merit order)
and benchmarks/baseline.py (oblivious sort of all orders, prefix sums, arg-max search; party 0
inputs the orders). Both traded volumes are checked against the plaintext reference. The ratio
baseline / mpc_market is printed and plotted against N.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.generate import community
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.mpc import local

from .baseline import plain_clear, records
from .suite import figure, mpc_row, profile_day

NAME, TITLE = 'baseline', 'mpc_market against the textbook sort-based MPyC clearing'
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)
COLUMNS = [('participants', 'participants'), ('orders', 'orders'), ('mpc_market end to end s', 'seconds'),
           ('mpc_market MPC session s', 'node_total_s'), ('baseline MPC session s', 'baseline_seconds'),
           ('baseline / mpc_market (sessions)', 'ratio'), ('traded Wh', 'traded_wh'), ('= reference (both)', 'exact')]
HERE = os.path.dirname(os.path.abspath(__file__))


def level_orders(book):
    """[(level, side, Wh)] of a one-slot book; -1 where an order cannot trade locally."""
    config = book.config
    out = []
    for o in book.orders:
        level = config.buy_level(o.limit_price) if o.side == 'buy' else config.sell_level(o.limit_price)
        out.append((-1 if level is None else level, o.side, o.energy_wh))
    return out


def run_baseline(rows, work):
    """(seconds inside the MPC session, (V, level)) of the baseline on one slot's records."""
    job, out = os.path.join(work, 'baseline-job.json'), os.path.join(work, 'baseline-out.json')
    bits = max(16, (sum(r[1] + r[2] for r in rows) + 1).bit_length() + 2)
    with open(job, 'w') as f:
        json.dump({'bits': bits, 'slots': [{'records': rows}]}, f)
    subprocess.run([sys.executable, os.path.join(HERE, 'baseline.py'), job, out, '-M3', '--no-log'], check=True,
                   stdout=subprocess.DEVNULL)
    with open(out) as f:
        result = json.load(f)
    return result['seconds'], tuple(result['results'][0])


def run(params, seed):
    rows = []
    with tempfile.TemporaryDirectory(prefix='mpc-market-baseline-') as work:
        for n in params['sizes']:
            raw = community(n, 1, seed, profile_day=profile_day(params))
            book = Book(CONFIG, [Order(o['participant'], o['slot'], o['side'], o['energy_wh'],
                                       Decimal(o['limit_price'])) for o in raw])
            started = time.perf_counter()
            secure = local.clear_mpc(book, nodes=3, timeout=3600)
            row = {'participants': len(book.participants), 'orders': len(book.orders), 'nodes': 3,
                   **mpc_row(secure, started, len(book.participants))}
            reference = clear_plain(book)
            traded = reference.slots[0].traded_wh
            recs = records(level_orders(book), CONFIG.levels)
            baseline_seconds, (volume, _) = run_baseline(recs, work)
            row.update(baseline_seconds=round(baseline_seconds, 3), traded_wh=traded,
                       ratio=round(baseline_seconds / row['node_total_s'], 1),
                       exact=secure.rows == reference.rows and volume == plain_clear(recs)[0] == traded)
            rows.append(row)
            print(f'  {n:>6} participants: mpc_market {row["node_total_s"]:.2f} s (session; {row["seconds"]:.2f} s end '
                  f'to end), baseline {baseline_seconds:.2f} s '
                  f'(x{row["ratio"]}), exact {row["exact"]}', flush=True)
    notes = ['the ratio compares MPC sessions: mpc_market from the parties connected to every participant\'s '
             'outputs (validation, crossing, merit order), the baseline from the parties connected to V and the price '
             '(input by party 0, sort, prefix sums, arg-max). mpc_market end to end adds client-side sharing and '
             'process start-up.',
             'the baseline opens only V and the price level; mpc_market also gives every participant its own '
             'matched Wh and amount.']
    return rows, notes


def figures(rows, directory):
    fig = figure()
    left, right = fig.subplots(1, 2)
    n = [r['participants'] for r in rows]
    left.plot(n, [r['node_total_s'] for r in rows], 'o-', label='mpc_market (MPC session)')
    left.plot(n, [r['baseline_seconds'] for r in rows], 's-', label='textbook sort-based (MPC session)')
    left.set_xscale('log')
    left.set_yscale('log')
    left.set_xlabel('participants (1 slot)')
    left.set_ylabel('seconds')
    left.legend(fontsize=8)
    right.plot(n, [r['ratio'] for r in rows], 'o-', color='#c44e52')
    right.set_xscale('log')
    right.set_xlabel('participants')
    right.set_ylabel('baseline / mpc_market')
    for axis in (left, right):
        axis.grid(True, which='both', alpha=0.3)
    fig.tight_layout()
    path = os.path.join(directory, 'baseline.png')
    fig.savefig(path)
    return [('time and ratio against the textbook clearing', path)]
