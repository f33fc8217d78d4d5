"""Suite `scaling`: time against the number of participants, log-log, with the fitted slope.

Clearing, and clearing + settlement (one MPC session), of generated communities of N
participants x 1 slot on a log grid, and N x 96 slots; each run checked against the plaintext
reference. The slope of log(time) against log(N) over N >= 100 says how time grows (1 =
linear). Published private markets are drawn as reference points with their citations.
"""

import math
import time
from decimal import Decimal

from mpc_market.market import plain
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.generate import community
from mpc_market.market.orders import Order
from mpc_market.mpc import local

from .suite import figure, mpc_row, plain_log_ticks, profile_day

NAME, TITLE = 'scaling', 'Scaling with the number of participants'
CONFIG = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 65535)
COLUMNS = [('task', 'task'), ('participants', 'participants'), ('slots', 'slots'), ('seconds', 'seconds'),
           ('MiB sent per node', 'mib_per_node'), ('peak MB per node', 'peak_rss_mb_per_node'),
           ('= reference', 'exact')]
LITERATURE = [  # (participants, seconds, label)
    (2500, 300, 'Abidin et al.: 2,500 bids < 5 min (online phase)'),
    (5000, 250.2, 'Alqahtani & Mustafa 2026: 5,000 in 4.17 min'),
    (5000, 9, 'Alqahtani & Mustafa 2023 (ZPPB-LEM): 5,000 bills < 9 s (online phase)'),
]


def book_of(participants, slots, seed, settle, day=None):
    raw, raw_readings = community(participants, slots, seed, with_readings=True, profile_day=day)
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    net_of = {(r['participant'], r['slot']): r['net_wh'] for r in raw_readings} if settle else None
    return Book(CONFIG, orders, extra_pairs=list(net_of or ())), net_of


def one(task, participants, slots, seed, nodes, day=None):
    settle = task == 'clear+settle'
    book, net_of = book_of(participants, slots, seed, settle, day)
    started = time.perf_counter()
    if settle:
        secure = local.settle_mpc(book, net_of, nodes=nodes, timeout=3600)
        reference = plain.settle_plain(book, net_of)
        exact = secure.rows == reference.rows and secure.bills == reference.bills
    else:
        secure = local.clear_mpc(book, nodes=nodes, timeout=3600)
        exact = secure.rows == plain.clear_plain(book).rows
    row = {'task': task, 'participants': len(book.participants), 'slots': slots, 'nodes': nodes,
           **mpc_row(secure, started, len(book.participants)), 'exact': exact}
    print(f'  {task:<13} {participants:>7} x {slots:<3} {row["seconds"]:8.2f} s  exact {exact}', flush=True)
    return row


def slope(rows, task, slots, above_startup=False):
    """Least-squares slope of log(seconds) against log(N) over N >= 100; above_startup: of the time
    above the series' smallest-N run (the fixed start-up: processes, TLS, imports)."""
    series = sorted((r['participants'], r['seconds']) for r in rows if r['task'] == task and r['slots'] == slots)
    if len(series) < 3:
        return None
    startup = series[0][1] if above_startup else 0.0
    points = [(math.log(n), math.log(t - startup)) for n, t in series if n >= 100 and t > startup]
    if len(points) < 2:
        return None
    mx, my = sum(x for x, _ in points) / len(points), sum(y for _, y in points) / len(points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def run(params, seed):
    day = profile_day(params)
    rows = [one(task, n, 1, seed, params['nodes'], day) for task in ('clear', 'clear+settle') for n in params['sizes']]
    rows += [one('clear', n, 96, seed, params['nodes'], day) for n in params['sizes_96']]
    return rows, [f'reference point: {label}' for _, _, label in LITERATURE]


def tables(rows):
    """The one report table, bytes sent per node in MiB (derived from bytes_per_node: older results too)."""
    return [(None, COLUMNS, [dict(r, mib_per_node=round(r['bytes_per_node'] / 2 ** 20, 1)) for r in rows])]


def notes(rows):
    """The fitted slopes (computed from the rows, so a regenerated report has them too)."""
    out = []
    for task, slots in (('clear', 1), ('clear+settle', 1), ('clear', 96)):
        raw, above = slope(rows, task, slots), slope(rows, task, slots, above_startup=True)
        if raw is not None:
            out.append(f'{task}, {slots} slot(s): log-log slope {raw:.2f} over N >= 100'
                       + (f', {above:.2f} for the time above the smallest run\'s start-up' if above is not None else '')
                       + ' (1 = linear in N)')
    return out


def figures(rows, directory):
    fig = figure(7.5, 5.4)
    axis = fig.subplots()
    for (task, slots), style in {('clear', 1): 'o-', ('clear+settle', 1): 's-', ('clear', 96): '^-'}.items():
        points = sorted((r['participants'], r['seconds']) for r in rows if r['task'] == task and r['slots'] == slots)
        if points:
            s = slope(rows, task, slots, above_startup=True)
            axis.plot(*zip(*points, strict=True), style, label=f'ours: {task}, {slots} slot{"s" if slots > 1 else ""}'
                      + (f', slope {s:.2f} above start-up' if s else ''))
    for n, seconds, label in LITERATURE:
        axis.plot([n], [seconds], 'x', markersize=9, markeredgewidth=2, label=label)
    axis.set_xscale('log')
    axis.set_yscale('log')
    sizes = sorted({r['participants'] for r in rows})
    plain_log_ticks(axis, 'x', sizes)
    plain_log_ticks(axis, 'y')
    axis.margins(y=0.08)  # the top reference point clear of the frame
    axis.set_xlabel('participants')
    axis.set_ylabel(f'seconds ({rows[0]["nodes"]} nodes, this machine)')
    axis.grid(True, which='major', alpha=0.3)
    # below the axes (constrained layout makes room): inside, six entries would cover the points
    fig.set_layout_engine('constrained')
    fig.legend(fontsize=8, loc='outside lower center', ncol=1)
    path = f'{directory}/scaling.png'
    fig.savefig(path)
    return [('time against participants, log-log', path)]
