"""Suite `settlement`: clear and settle N participants x 1 slot in one MPC session, per phase.

Generated community with meter readings (forecast error ~15 %), 3 node processes on localhost;
the double auction at each size, then each community scheme at one size. Per run: client sharing,
validation, clearing, allocation, settlement, end to end, bytes sent per participant by one node,
peak memory per node, whether MPC agreed with the reference and whether money balanced.
"""

import dataclasses
import time
from decimal import Decimal

from mpc_market.market import plain
from mpc_market.market.book import Book
from mpc_market.market.generate import community
from mpc_market.market.orders import Order
from mpc_market.mpc import local

from .bench_clearing import CONFIG, phase_bars
from .suite import profile_day

NAME, TITLE = 'settlement', 'Clearing and settlement in one MPC session: time per phase'
PHASES = ('validation', 'clearing', 'allocation', 'settlement')
COLUMNS = [('participants × 1 slot', 'participants'), ('mechanism', 'mechanism'),
           ('end to end (clear + settle) s', 'seconds'), ('sharing (client) s', 'sharing_s'),
           ('validation s', 'validation_s'), ('clearing s', 'clearing_s'), ('allocation s', 'allocation_s'),
           ('settlement s', 'settlement_s'), ('KiB sent / participant / node', 'kib_per_participant'),
           ('peak MB per node', 'peak_rss_mb_per_node'), ('= reference', 'agrees_with_reference'),
           ('money balances', 'money_balances')]


def complete(row):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: a row with the script's fields (end_to_end_s, bytes_per_participant, agrees_with_reference,
            money_balances).

    Returns:
        The row with seconds, exact (agrees and balances), bytes_per_node and kib_per_participant.
    """
    exact = row.get('agrees_with_reference') is True and row.get('money_balances') is True
    return dict(row, seconds=row['end_to_end_s'], exact=exact if 'agrees_with_reference' in row else None,
                bytes_per_node=row['bytes_per_participant'] * row['participants'],
                kib_per_participant=round(row['bytes_per_participant'] / 1024, 1))


def one(participants, mechanism, nodes, seed, check, day=None):
    """Clear and settle one generated community under MPC; the row of its figures."""
    raw, raw_readings = community(participants, 1, seed, with_readings=True, profile_day=day)
    config = dataclasses.replace(CONFIG, mechanism=mechanism)
    started = time.perf_counter()
    orders = [Order(o['participant'], o['slot'], o['side'], o['energy_wh'], Decimal(o['limit_price'])) for o in raw]
    net_of = {(r['participant'], r['slot']): r['net_wh'] for r in raw_readings}
    book = Book(config, orders, extra_pairs=list(net_of))
    book_s = time.perf_counter() - started
    result = local.settle_mpc(book, net_of, nodes=nodes)
    stats = result.stats
    timings = stats['node_timings']
    phases = {name: max(t.get(name, 0.0) for t in timings) for name in PHASES}
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
    return complete(row)


def run(params, seed):
    """The double auction at every ``sizes``, then every ``mechanisms`` at ``scheme_size`` participants."""
    runs = ([(n, 'double-auction') for n in params['sizes']]
            + [(params['scheme_size'], m) for m in params['mechanisms']])
    rows = []
    for participants, mechanism in runs:
        row = one(participants, mechanism, params['nodes'], seed, params['check'], profile_day(params))
        rows.append(row)
        print(f'{participants:>7} x 1 {mechanism:<14} end to end {row["end_to_end_s"]:6.2f} s (sharing '
              f'{row["sharing_s"]:.2f}, validation {row["validation_s"]:.2f}, clearing {row["clearing_s"]:.2f}, '
              f'allocation {row["allocation_s"]:.2f}, settlement {row["settlement_s"]:.2f}); '
              f'{row["bytes_per_participant"] / 1024:.1f} KiB/participant sent per node; '
              f'peak {row["peak_rss_mb_per_node"]:.0f} MB/node'
              + (f'; agrees: {row["agrees_with_reference"]}, balances: {row["money_balances"]}'
                 if params['check'] else ''), flush=True)
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'{params["nodes"]} node processes on localhost; end to end = building the book + client-side '
            'sharing + the MPC session (clearing and settlement) + reconstruction; a phase is the slowest node\'s.',
            'money balances: the deviation amounts of all participants sum to the retailer\'s net per slot.']


def figures(rows, directory):
    path = f'{directory}/settlement.png'
    short = {'double-auction': 'DA', 'bill-sharing': 'bill-sh.'}
    phase_bars(rows, [f'{r["participants"]:,}\n{short.get(r["mechanism"], r["mechanism"])}' for r in rows],
               'participants × 1 slot, mechanism (DA: double auction)', ('sharing',) + PHASES,
               f'Clear + settle in one MPC session, {rows[0]["nodes"]} nodes (a node phase: the slowest node)',
               path)
    return [('time per phase, size and mechanism', path)]
